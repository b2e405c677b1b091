import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, JoblineError, type JobEvent, type JoblineClient, type Session } from '../../src/client/index.js';
import { registerProbeHandlers } from '../conformance/harness.js';
import { ADMIN_EMAIL, ADMIN_PASSWORD, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/** The client against a real server listening on loopback. */

let offsetMs = 0;
/** The server's clock runs ahead by `offsetMs`, so a test can let an access token expire without waiting. */
const offsetClock = { now: () => Date.now() + offsetMs };

async function collect(events: AsyncIterable<JobEvent>): Promise<JobEvent[]> {
  const seen: JobEvent[] = [];
  for await (const event of events) seen.push(event);
  return seen;
}

describe('jobline/client', () => {
  let server: TestRuntime;
  let baseUrl: string;
  let client: JoblineClient;

  beforeAll(async () => {
    server = await startTestRuntime({ handlers: registerProbeHandlers, clock: offsetClock });
    baseUrl = await server.runtime.app.listen({ port: 0, host: '127.0.0.1' });
    const key = await createClient({ baseUrl }).login(ADMIN_EMAIL, ADMIN_PASSWORD);
    const created = await createClient({ baseUrl, session: key }).apiKeys.create({ name: 'client tests' });
    client = createClient({ baseUrl, apiKey: created.key });
  });
  afterAll(async () => server.close());

  it('submits with an Idempotency-Key, so the same key returns the first job', async () => {
    const first = await client.jobs.submit({ type: 'echo', payload: { n: 1 } }, { idempotencyKey: 'client-test-1' });
    expect(first.created).toBe(true);
    const again = await client.jobs.submit({ type: 'echo', payload: { n: 1 } }, { idempotencyKey: 'client-test-1' });
    expect(again).toMatchObject({ created: false, deduplicatedBy: 'idempotencyKey', job: { id: first.job.id } });
    // Without a key of the caller's, each submit still carries one of its own: two submits, two jobs.
    const a = await client.jobs.submit({ type: 'echo' });
    const b = await client.jobs.submit({ type: 'echo' });
    expect(a.job.id).not.toBe(b.job.id);
    expect(a.job.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('throws typed errors carrying the problem’s code', async () => {
    const missing = await client.jobs.get('0195d3c4-5b6a-7c8d-9e0f-123456789abc').catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(JoblineError);
    expect(missing).toMatchObject({ code: 'JOBLINE_JOB_NOT_FOUND', status: 404 });
    expect((missing as JoblineError).requestId).toBeTruthy();
    const invalid = await client.jobs.submit({ type: '' }).catch((error: unknown) => error);
    expect(JoblineError.is(invalid, 'JOBLINE_VALIDATION_FAILED')).toBe(true);
    expect((invalid as JoblineError).fieldErrors[0]?.path).toContain('type');
    const anonymous = await createClient({ baseUrl }).me().catch((error: unknown) => error);
    expect(anonymous).toMatchObject({ code: 'JOBLINE_UNAUTHENTICATED', status: 401 });
    const closedPort = await createClient({ baseUrl: 'http://127.0.0.1:9', retries: 0 }).me().catch((error: unknown) => error);
    expect(closedPort).toMatchObject({ code: 'JOBLINE_UNREACHABLE', status: 0 });
    expect((closedPort as Error).message).toContain('127.0.0.1:9');
  });

  it('pages through any list with for await', async () => {
    const tag = `paging-${Date.now()}`;
    await client.jobs.submitBulk(Array.from({ length: 7 }, (_unused, index) => ({ type: 'echo', payload: { index }, tags: [tag] })));
    const first = await client.jobs.list({ tag, limit: 3 });
    expect(first.items).toHaveLength(3);
    expect(first.nextCursor).not.toBeNull();
    const all = [];
    for await (const job of client.jobs.list({ tag, limit: 3 })) all.push(job);
    expect(all).toHaveLength(7);
    expect(new Set(all.map((job) => job.id)).size).toBe(7);
    const pages = [];
    for await (const page of client.jobs.list({ tag, limit: 3 }).pages()) pages.push(page.items.length);
    expect(pages).toEqual([3, 3, 1]);
  });

  it('waits for a result on the long poll', async () => {
    const { job } = await client.jobs.submit({ type: 'sleepy', payload: { ms: 300 } });
    const finished = await client.jobs.result(job.id);
    expect(finished).toMatchObject({ id: job.id, state: 'completed', result: { slept: true } });
    const slow = await client.jobs.submit({ type: 'sleepy', payload: { ms: 5000 } });
    const early = await client.jobs.result(slow.job.id, { timeoutMs: 200 });
    expect(['queued', 'active']).toContain(early.state);
    await client.jobs.cancel(slow.job.id);
  });

  it('follows a finished job by replaying from seq 0, and from any later seq', async () => {
    const { job } = await client.jobs.submit({ type: 'chatty', payload: { count: 25 } });
    await client.jobs.result(job.id);
    const events = await collect(client.jobs.follow(job.id));
    expect(events.map((event) => event.seq)).toEqual(events.map((_event, index) => index + 1));
    expect(events[0]?.type).toBe('job.created');
    expect(events.filter((event) => event.type === 'job.delta')).toHaveLength(25);
    expect(events.at(-1)).toMatchObject({ type: 'job.completed', data: { result: { chunks: 25 } } });
    const tail = await collect(client.jobs.follow(job.id, { fromSeq: 20 }));
    expect(tail.map((event) => event.seq)).toEqual(events.slice(20).map((event) => event.seq));
    // Nothing after the last event: the stream ends at once.
    expect(await collect(client.jobs.follow(job.id, { fromSeq: events.length }))).toEqual([]);
  });

  it('follows live output as it is produced', async () => {
    const { job } = await client.jobs.submit({ type: 'streamer', payload: { count: 60, batch: 10, everyMs: 40 } });
    const arrivals: number[] = [];
    const events: JobEvent[] = [];
    for await (const event of client.jobs.follow(job.id)) {
      events.push(event);
      if (event.type === 'job.delta') arrivals.push(Date.now());
    }
    expect(events.filter((event) => event.type === 'job.delta').map((event) => event.data['chunk'])).toEqual(
      Array.from({ length: 60 }, (_unused, index) => `token ${index + 1}`),
    );
    // Live: the deltas arrived over the job's run, not all at once at the end.
    expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThan(100);
  });

  it('refreshes an expired access token by itself, and hands over the new session', async () => {
    const sessions: Session[] = [];
    const user = createClient({ baseUrl, onSession: (session) => sessions.push(session) });
    await user.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    expect(sessions).toHaveLength(1);
    try {
      offsetMs = 16 * 60_000; // past the 15-minute access token
      const me = await user.me();
      expect(me.email).toBe(ADMIN_EMAIL);
      expect(sessions).toHaveLength(2);
      expect(sessions[1]!.refreshToken).not.toBe(sessions[0]!.refreshToken);
      // A client started from a stored session that is about to expire refreshes before its first call.
      const stored = sessions[1]!;
      const resumed = createClient({ baseUrl, session: { ...stored, expiresAt: Date.now() + 1000 }, onSession: (session) => sessions.push(session) });
      await resumed.me();
      expect(sessions).toHaveLength(3);
      // The refresh token it replaced no longer works; the client says so with the server's code.
      const stale = createClient({ baseUrl, session: { accessToken: 'expired', refreshToken: stored.refreshToken } });
      await expect(stale.me()).rejects.toMatchObject({ status: 401 });
    } finally {
      offsetMs = 0;
    }
  });
});

describe('jobline/client retries', () => {
  let farSide: Server;
  let baseUrl: string;
  const seen: { at: number; headers: IncomingHttpHeaders }[] = [];

  beforeAll(async () => {
    // The far side answers 429 (Retry-After: 1), then 503, then accepts.
    farSide = createServer((request, response) => {
      seen.push({ at: Date.now(), headers: request.headers });
      request.resume();
      if (seen.length === 1) return void response.writeHead(429, { 'retry-after': '1', 'content-type': 'application/problem+json' }).end(problem(429, 'JOBLINE_RATE_LIMITED'));
      if (seen.length === 2) return void response.writeHead(503, { 'content-type': 'application/problem+json' }).end(problem(503, 'JOBLINE_NOT_READY'));
      response.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'job-1', state: 'queued' }));
    });
    await new Promise<void>((resolve) => farSide.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(farSide.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => farSide.close(() => resolve())));

  it('retries 429 and 503 with backoff, honouring Retry-After, with one Idempotency-Key throughout', async () => {
    const client = createClient({ baseUrl, apiKey: 'jl_test' });
    const submitted = await client.jobs.submit({ type: 'echo' });
    expect(submitted.job.id).toBe('job-1');
    expect(seen).toHaveLength(3);
    expect(seen[1]!.at - seen[0]!.at).toBeGreaterThanOrEqual(950);
    const keys = new Set(seen.map((request) => request.headers['idempotency-key']));
    expect(keys.size).toBe(1);
    expect([...keys][0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.every((request) => request.headers.authorization === 'Bearer jl_test')).toBe(true);
  });

  it('gives up after its retries with the last answer’s error', async () => {
    seen.length = 0;
    const client = createClient({ baseUrl, apiKey: 'jl_test', retries: 0 });
    await expect(client.jobs.submit({ type: 'echo' })).rejects.toMatchObject({ code: 'JOBLINE_RATE_LIMITED', status: 429 });
  });
});

function problem(status: number, code: string): string {
  return JSON.stringify({ type: `urn:jobline:problem:${code}`, title: 'x', status, detail: `answered ${status}`, code });
}

describe('jobline/client across a server restart', () => {
  it('follows a job through a restart without missing or repeating an event', async () => {
    let server = await startTestRuntime({ handlers: registerProbeHandlers, keepDataDir: true, env: { JOBLINE_SHUTDOWN_GRACE: '200' } });
    const dataDir = server.dataDir;
    try {
      const address = new URL(await server.runtime.app.listen({ port: 0, host: '127.0.0.1' }));
      const port = Number(address.port);
      const baseUrl = address.origin;
      const session = await createClient({ baseUrl }).login(ADMIN_EMAIL, ADMIN_PASSWORD);
      const created = await createClient({ baseUrl, session }).apiKeys.create({ name: 'restart' });
      const client = createClient({ baseUrl, apiKey: created.key });
      const { job } = await client.jobs.submit({ type: 'streamer', payload: { count: 400, batch: 10, everyMs: 30 } });

      const events: JobEvent[] = [];
      let restarted: Promise<void> | null = null;
      for await (const event of client.jobs.follow(job.id)) {
        events.push(event);
        if (restarted === null && events.filter((seen) => seen.type === 'job.delta').length >= 30) {
          // Mid-stream: the server goes away (its running job is released) and comes back on the same port.
          restarted = (async () => {
            await server.close();
            server = await startTestRuntime({ handlers: registerProbeHandlers, dataDir, keepDataDir: true });
            await server.runtime.app.listen({ port, host: '127.0.0.1' });
          })();
        }
      }
      await restarted;
      const stored = await client.jobs.events(job.id, { limit: 10_000 });
      expect(events.map((event) => event.seq)).toEqual(stored.map((event) => event.seq));
      expect(events.map((event) => event.seq)).toEqual(events.map((_event, index) => index + 1));
      expect(events.at(-1)).toMatchObject({ type: 'job.completed' });
      // The first run was cut short, so the job ran again after the restart.
      expect(events.filter((event) => event.type === 'job.active').length).toBeGreaterThanOrEqual(2);
    } finally {
      await server.close();
      const { rmSync } = await import('node:fs');
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
