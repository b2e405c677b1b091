import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerRegistry } from '../../src/workers/registry.js';
import type { HandlerContext } from '../../src/workers/types.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { startReceiver, until, webhookApi, type Receiver } from './helpers.js';

/** Far enough apart that a retry held back by a loaded machine is still told from the next delay. */
const RETRY_DELAYS = [200, 1200];
/** How late a retry may go out on a loaded machine (milliseconds on an idle one). */
const RETRY_SLACK_MS = 800;

function registerHandlers(registry: HandlerRegistry): void {
  registry.register({ type: 'greet', run: async (ctx: HandlerContext<{ name: string }>) => ({ greeting: `Hello, ${ctx.payload.name}!` }) }, 'test');
  registry.register(
    {
      type: 'chatty',
      run: async (ctx: HandlerContext) => {
        ctx.progress(50);
        ctx.log('halfway');
        ctx.delta('a');
        ctx.delta('b');
        return 'done';
      },
    },
    'test',
  );
}

/** Deliveries to a real loopback receiver, through the SSRF guard with 127.0.0.0/8 allowed. */
describe('webhook deliveries', () => {
  let server: TestRuntime;
  let receiver: Receiver;
  let token = '';
  let api: ReturnType<typeof webhookApi>;

  beforeAll(async () => {
    receiver = await startReceiver();
    server = await startTestRuntime({
      env: { JOBLINE_OUTBOUND_ALLOW: '127.0.0.0/8', JOBLINE_WEBHOOK_RETRY_DELAYS: RETRY_DELAYS.join(',') },
      handlers: registerHandlers,
    });
    token = (await server.login()).accessToken;
    api = webhookApi(server, () => token);
  });
  afterAll(async () => {
    await server.close();
    await receiver.close();
  });

  it('sends one signed delivery for a completed job, with the job and the event in the body', async () => {
    const endpoint = await api.createEndpoint(receiver.url('/completed'), ['job.completed']);
    const job = await api.submit('greet', { name: 'Ada' });
    const [hit] = await until(() => receiver.hits('/completed'), (hits) => hits.length === 1, 15_000, 'the delivery');
    expect(hit!.method).toBe('POST');
    expect(hit!.headers).toMatchObject({ 'content-type': 'application/json', 'user-agent': 'Jobline-Webhooks/1' });
    expect(hit!.headers['webhook-id']).toMatch(/^msg_/);
    expect(Math.abs(Number(hit!.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(5);

    const headers = hit!.headers as Record<string, string>;
    const body = new Webhook(endpoint.secret).verify(hit!.body, headers) as { type: string; timestamp: string; data: { job: Record<string, unknown>; event: Record<string, unknown> } };
    expect(body.type).toBe('job.completed');
    expect(body.timestamp).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(body.data.job).toMatchObject({ id: job.id, type: 'greet', state: 'completed', result: { greeting: 'Hello, Ada!' } });
    expect(body.data.event).toMatchObject({ type: 'job.completed', jobId: job.id, at: body.timestamp });
    // A receiver verifying with the package refuses a tampered body and a stale timestamp.
    expect(() => new Webhook(endpoint.secret).verify(hit!.body.replace('Ada', 'Eve'), headers)).toThrow(WebhookVerificationError);
    const stale = new Date(Date.now() - 6 * 60_000);
    const replayed: Record<string, string> = { ...headers, 'webhook-timestamp': String(Math.floor(stale.getTime() / 1000)) };
    replayed['webhook-signature'] = new Webhook(endpoint.secret).sign(headers['webhook-id']!, stale, hit!.body);
    expect(() => new Webhook(endpoint.secret).verify(hit!.body, replayed)).toThrow(/too old/);

    const [delivery] = await until(() => api.deliveries(endpoint.id), (items) => items[0]?.status === 'succeeded');
    expect(delivery).toMatchObject({ id: headers['webhook-id'], eventType: 'job.completed', jobId: job.id, attempts: 1, lastStatusCode: 200, lastError: null, nextAttemptAt: null });
  });

  it('filters by event type and queue; * leaves out progress, log and delta unless named', async () => {
    const all = await api.createEndpoint(receiver.url('/all'), ['*']);
    const deltas = await api.createEndpoint(receiver.url('/deltas'), ['job.delta', 'job.progress']);
    await api.createEndpoint(receiver.url('/other-queue'), ['*'], { queue: 'other' });
    const job = await api.submit('chatty', null);
    await until(() => receiver.hits('/all'), (hits) => hits.length === 3, 15_000, 'three deliveries');
    await until(() => receiver.hits('/deltas'), (hits) => hits.length === 3, 15_000, 'progress and two deltas');
    const types = (path: string) => receiver.hits(path).map((hit) => (JSON.parse(hit.body) as { type: string }).type).sort();
    expect(types('/all')).toEqual(['job.active', 'job.completed', 'job.created']);
    expect(types('/deltas')).toEqual(['job.delta', 'job.delta', 'job.progress']);
    const chunks = receiver.hits('/deltas').map((hit) => JSON.parse(hit.body) as { data: { event: { seq: number; data: { chunk?: string } } } });
    expect(chunks.flatMap((body) => body.data.event.data.chunk ?? []).sort()).toEqual(['a', 'b']);
    expect(new Set(chunks.map((body) => body.data.event.seq)).size).toBe(3);
    expect((await api.deliveries(deltas.id)).every((item) => item.jobId === job.id)).toBe(true);
    expect((await api.deliveries(all.id)).map((item) => item.eventType).sort()).toEqual(['job.active', 'job.completed', 'job.created']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.hits('/other-queue')).toEqual([]);
  });

  it('retries until success with one webhook-id and body, at the configured delays ±10%', async () => {
    receiver.plan('/flaky', (n) => (n < 3 ? { status: 500, body: `failure ${n}` } : { status: 204 }));
    const endpoint = await api.createEndpoint(receiver.url('/flaky'));
    const test = await api.test(endpoint.id);
    const hits = await until(() => receiver.hits('/flaky'), (list) => list.length === 3, 15_000, 'three attempts');
    expect(new Set(hits.map((hit) => hit.headers['webhook-id']))).toEqual(new Set([test.id]));
    expect(new Set(hits.map((hit) => hit.body)).size).toBe(1);
    const gaps = [hits[1]!.at - hits[0]!.at, hits[2]!.at - hits[1]!.at];
    RETRY_DELAYS.forEach((delay, index) => {
      expect(gaps[index]).toBeGreaterThanOrEqual(delay * 0.9 - 5);
      expect(gaps[index]).toBeLessThanOrEqual(delay * 1.1 + RETRY_SLACK_MS);
    });
    const delivery = await until(() => api.delivery(endpoint.id, test.id), (view) => view.status === 'succeeded');
    expect(delivery.attempts.map((attempt) => attempt.statusCode)).toEqual([500, 500, 204]);
    expect(delivery.attempts[0]).toMatchObject({ responseExcerpt: 'failure 1', error: { code: 'JOBLINE_WEBHOOK_HTTP_STATUS' } });
    expect(delivery.lastError).toBeNull();
  });

  it('does not follow a redirect and counts it as a failure', async () => {
    receiver.plan('/redirect', () => ({ status: 302, headers: { location: receiver.url('/target') } }));
    const endpoint = await api.createEndpoint(receiver.url('/redirect'));
    const test = await api.test(endpoint.id);
    const delivery = await until(() => api.delivery(endpoint.id, test.id), (view) => view.status === 'failed', 15_000, 'the delivery to fail');
    expect(delivery.attempts).toHaveLength(RETRY_DELAYS.length + 1);
    expect(delivery).toMatchObject({ lastStatusCode: 302, lastError: { code: 'JOBLINE_WEBHOOK_REDIRECT' }, nextAttemptAt: null });
    expect(receiver.hits('/target')).toEqual([]);
  });

  it('disables an endpoint that answers 410 Gone', async () => {
    receiver.plan('/gone', () => ({ status: 410 }));
    const endpoint = await api.createEndpoint(receiver.url('/gone'));
    const test = await api.test(endpoint.id);
    const delivery = await until(() => api.delivery(endpoint.id, test.id), (view) => view.status === 'failed');
    expect(delivery.attempts).toHaveLength(1);
    const after = await api.endpoint(endpoint.id);
    expect(after.enabled).toBe(false);
    expect(after.disabledReason).toMatch(/410 Gone/);
    const again = await server.request({ method: 'POST', url: `/v1/webhooks/${endpoint.id}/test`, token });
    expect(again.statusCode).toBe(409);
  });

  it('waits as long as a 429 Retry-After asks', async () => {
    receiver.plan('/busy', (n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }));
    const endpoint = await api.createEndpoint(receiver.url('/busy'));
    const test = await api.test(endpoint.id);
    const hits = await until(() => receiver.hits('/busy'), (list) => list.length === 2, 15_000, 'the second attempt');
    const gap = hits[1]!.at - hits[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(990);
    // Not the 200 ms configured for a first retry, and not much later than asked (the slack is for a loaded machine).
    expect(gap).toBeLessThan(1000 + RETRY_SLACK_MS);
    expect((await until(() => api.delivery(endpoint.id, test.id), (view) => view.status === 'succeeded')).attempts.map((a) => a.statusCode)).toEqual([429, 200]);
  });

  it('logs every attempt with at most 1 KiB of the response, and redelivers with the same webhook-id', async () => {
    const long = 'é'.repeat(3000);
    let healthy = false;
    receiver.plan('/log', () => (healthy ? { status: 200, body: 'ok' } : { status: 500, body: long }));
    const endpoint = await api.createEndpoint(receiver.url('/log'));
    const test = await api.test(endpoint.id);
    const failed = await until(() => api.delivery(endpoint.id, test.id), (view) => view.status === 'failed');
    expect(failed.attempts).toHaveLength(3);
    for (const attempt of failed.attempts) {
      expect(attempt.statusCode).toBe(500);
      expect(attempt.durationMs).toBeGreaterThanOrEqual(0);
      expect(Buffer.byteLength(attempt.responseExcerpt ?? '')).toBeLessThanOrEqual(1024);
      expect(long.startsWith(attempt.responseExcerpt ?? 'x')).toBe(true);
    }
    healthy = true;
    await api.redeliver(endpoint.id, test.id);
    const redelivered = await until(() => api.delivery(endpoint.id, test.id), (view) => view.status === 'succeeded');
    expect(redelivered.attempts.map((attempt) => attempt.statusCode)).toEqual([500, 500, 500, 200]);
    const hits = receiver.hits('/log');
    expect(hits).toHaveLength(4);
    expect(new Set(hits.map((hit) => hit.headers['webhook-id']))).toEqual(new Set([test.id]));
    expect(new Set(hits.map((hit) => hit.body)).size).toBe(1);
  });

  it('signs with both secrets while a rotated secret is still valid', async () => {
    const endpoint = await api.createEndpoint(receiver.url('/rotated'));
    const rotated = (await api.patch(endpoint.id, { rotateSecret: true })) as { secret: string };
    await api.test(endpoint.id);
    const [hit] = await until(() => receiver.hits('/rotated'), (hits) => hits.length === 1);
    const headers = hit!.headers as Record<string, string>;
    const signatures = headers['webhook-signature']!.split(' ');
    expect(signatures).toHaveLength(2);
    const pairs: [string, string][] = [
      [rotated.secret, signatures[0]!],
      [endpoint.secret, signatures[1]!],
    ];
    for (const [secret, signature] of pairs) {
      expect(() => new Webhook(secret).verify(hit!.body, { ...headers, 'webhook-signature': signature })).not.toThrow();
    }
    expect(() => new Webhook(rotated.secret).verify(hit!.body, { ...headers, 'webhook-signature': signatures[1]! })).toThrow();
  });

  it('exports delivery metrics', async () => {
    const metrics = await server.request({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/jobline_webhook_deliveries_total\{outcome="succeeded"\} [1-9]/);
    expect(metrics.body).toMatch(/jobline_webhook_deliveries_total\{outcome="retried"\} [1-9]/);
    expect(metrics.body).toMatch(/jobline_webhook_deliveries_total\{outcome="failed"\} [1-9]/);
    expect(metrics.body).toContain('jobline_webhook_attempt_duration_seconds_bucket');
  });
});
