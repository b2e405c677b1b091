import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { HandlerContext } from '../../src/workers/types.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { startReceiver, until, webhookApi, type Receiver } from './helpers.js';

/**
 * Deliveries come from the job-event outbox: events committed while no dispatcher runs (here an
 * `api`-role server, which sends nothing) are delivered by the next server that does.
 */
describe('webhook outbox', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'jobline-outbox-'));
  const servers: TestRuntime[] = [];
  let receiver: Receiver | undefined;
  afterAll(async () => {
    for (const server of servers) await server.close();
    await receiver?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const start = async (role: 'api' | 'all', extraEnv: Record<string, string> = {}) => {
    const server = await startTestRuntime({
      dataDir,
      keepDataDir: true,
      env: { JOBLINE_ROLE: role, JOBLINE_OUTBOUND_ALLOW: '127.0.0.0/8', ...extraEnv },
      handlers: (registry) => registry.register({ type: 'greet', run: async (ctx: HandlerContext) => ({ hello: ctx.payload }) }, 'test'),
    });
    servers.push(server);
    return server;
  };

  it('delivers events committed before any dispatcher ran, once the next server starts', async () => {
    receiver = await startReceiver();
    const first = await start('api');
    let token = (await first.login()).accessToken;
    const api = webhookApi(first, () => token);
    const endpoint = await api.createEndpoint(receiver.url('/outbox'), ['job.created', 'job.completed']);
    const jobIds: string[] = [];
    for (let i = 0; i < 5; i += 1) jobIds.push((await api.submit('greet', i)).id);
    expect(await first.runtime.database.db.selectFrom('webhook_deliveries').select('id').execute()).toEqual([]);
    await first.runtime.close();

    const second = await start('all');
    token = (await second.login()).accessToken;
    const hits = await until(
      () => receiver!.hits('/outbox'),
      (list) => new Set(list.map((hit) => hit.headers['webhook-id'])).size === 10,
      10_000,
      'ten deliveries',
    );
    const seen = new Set(hits.map((hit) => {
      const body = JSON.parse(hit.body) as { type: string; data: { job: { id: string } } };
      return `${body.data.job.id} ${body.type}`;
    }));
    expect([...seen].sort()).toEqual(jobIds.flatMap((id) => [`${id} job.completed`, `${id} job.created`]).sort());
    const listed = await webhookApi(second, () => token).deliveries(endpoint.id);
    expect(listed).toHaveLength(10);
  });

  it('abandons a send still running at shutdown after the grace period; the next server sends it again', async () => {
    let hang = true;
    receiver!.plan('/slow', () => ({ status: hang ? 0 : 200 }));
    const first = await start('all', { JOBLINE_SHUTDOWN_GRACE: '300' });
    let token = (await first.login()).accessToken;
    const endpoint = await webhookApi(first, () => token).createEndpoint(receiver!.url('/slow'));
    const test = await webhookApi(first, () => token).test(endpoint.id);
    await until(() => receiver!.hits('/slow'), (hits) => hits.length === 1, 15_000, 'the first send');
    const closing = Date.now();
    await first.runtime.close();
    // Well before the 15 s request timeout would end the send (the slack is for a loaded machine).
    expect(Date.now() - closing).toBeLessThan(8000);

    hang = false;
    const second = await start('all');
    token = (await second.login()).accessToken;
    const api = webhookApi(second, () => token);
    const delivery = await until(() => api.delivery(endpoint.id, test.id), (view) => view.status === 'succeeded', 15_000, 'the delivery');
    // The abandoned send was not an attempt: only the one that got an answer is logged.
    expect(delivery.attempts.map((attempt) => attempt.statusCode)).toEqual([200]);
    expect(receiver!.hits('/slow').map((hit) => hit.headers['webhook-id'])).toEqual([test.id, test.id]);
  });
});
