import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startLoopbackServer, type LoopbackServer } from '../helpers/loopbackServer.js';
import { callServer, loginTo, startServerProcess, type ServerProcess } from '../helpers/process.js';

const JOBS = 250;
/** job.created and job.completed of every job. */
const EXPECTED_DELIVERIES = JOBS * 2;

interface Delivery {
  id: string;
  eventType: string;
  jobId: string;
  status: string;
}

/**
 * Kills a real server with SIGKILL while 500 job events await webhook delivery (the receiver
 * answers 503), restarts it on the same data, and checks the receiver then gets every delivery.
 */
describe('webhook crash recovery', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'jobline-webhook-crash-'));
  const handlersDir = path.join(root, 'handlers');
  const servers: ServerProcess[] = [];
  let receiver: LoopbackServer | undefined;
  afterAll(async () => {
    for (const server of servers) if (server.child.exitCode === null) server.child.kill('SIGKILL');
    await receiver?.close();
    rmSync(root, { recursive: true, force: true });
  });

  const env = {
    JOBLINE_DATA_DIR: path.join(root, 'data'),
    JOBLINE_HANDLERS_DIR: handlersDir,
    JOBLINE_ADMIN_EMAIL: 'crash@example.com',
    JOBLINE_ADMIN_PASSWORD: 'crash-password-1',
    JOBLINE_LOG_LEVEL: 'warn',
    JOBLINE_OUTBOUND_ALLOW: '127.0.0.0/8',
    // Retries keep coming (about once a second) for longer than the test runs.
    JOBLINE_WEBHOOK_RETRY_DELAYS: Array.from({ length: 60 }, () => '1000').join(','),
  };

  const api = <T>(server: ServerProcess, token: string, method: string, url: string, body?: unknown) => callServer<T>(server, token, method, url, body);
  const login = (server: ServerProcess) => loginTo(server, env.JOBLINE_ADMIN_EMAIL, env.JOBLINE_ADMIN_PASSWORD);

  async function completedJobs(server: ServerProcess, token: string): Promise<number> {
    const queues = await api<{ name: string; counts: Record<string, number> }[]>(server, token, 'GET', '/v1/admin/queues');
    return queues.body.find((queue) => queue.name === 'default')?.counts['completed'] ?? 0;
  }

  async function allDeliveries(server: ServerProcess, token: string, endpointId: string): Promise<Delivery[]> {
    const items: Delivery[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor === null ? '' : `&cursor=${cursor}`;
      const page = await api<{ items: Delivery[]; nextCursor: string | null }>(server, token, 'GET', `/v1/webhooks/${endpointId}/deliveries?limit=100${query}`);
      items.push(...page.body.items);
      cursor = page.body.nextCursor;
    } while (cursor !== null);
    return items;
  }

  async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('delivers every webhook-id after a SIGKILL with 500 deliveries pending', async () => {
    let healthy = false;
    const refused = new Set<string>();
    const accepted = new Set<string>();
    receiver = await startLoopbackServer((request, response) => {
      const id = String(request.headers['webhook-id']);
      (healthy ? accepted : refused).add(id);
      response.writeHead(healthy ? 200 : 503).end();
    });
    mkdirSync(handlersDir, { recursive: true });
    writeFileSync(path.join(handlersDir, 'work.mjs'), `export default { type: 'work', concurrency: 50, async run(ctx) { return ctx.payload; } };`);

    const first = await startServerProcess(env);
    servers.push(first);
    const token = await login(first);
    const endpoint = await api<{ id: string }>(first, token, 'POST', '/v1/webhooks', {
      url: receiver.url('/crash'),
      events: ['job.created', 'job.completed'],
    });
    expect(endpoint.status).toBe(201);
    const submitted = await api<{ jobs: { id: string }[] }>(first, token, 'POST', '/v1/jobs/bulk', {
      jobs: Array.from({ length: JOBS }, (_value, index) => ({ type: 'work', payload: { index } })),
    });
    expect(submitted.status).toBe(201);
    await until(async () => (await completedJobs(first, token)) === JOBS, 20_000, `${JOBS} completed jobs`);
    await until(() => refused.size === EXPECTED_DELIVERIES, 20_000, 'every delivery to be refused once');
    const pending = await allDeliveries(first, token, endpoint.body.id);
    expect(pending).toHaveLength(EXPECTED_DELIVERIES);
    expect(pending.every((delivery) => delivery.status === 'pending')).toBe(true);
    expect(accepted.size).toBe(0);

    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();
    healthy = true;

    const second = await startServerProcess(env);
    servers.push(second);
    const token2 = await login(second);
    let deliveries: Delivery[] = [];
    await until(
      async () => {
        deliveries = await allDeliveries(second, token2, endpoint.body.id);
        return deliveries.length === EXPECTED_DELIVERIES && deliveries.every((delivery) => delivery.status === 'succeeded');
      },
      30_000,
      `${EXPECTED_DELIVERIES} succeeded deliveries`,
    );
    // One delivery per job and event, none missed and none doubled, each received by the endpoint.
    const pairs = new Set(deliveries.map((delivery) => `${delivery.jobId} ${delivery.eventType}`));
    expect(pairs).toEqual(new Set(submitted.body.jobs.flatMap((job) => [`${job.id} job.created`, `${job.id} job.completed`])));
    const missing = deliveries.filter((delivery) => !accepted.has(delivery.id));
    expect(missing).toEqual([]);

    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    // Room for its waits (up to 70 s) and two server starts on a loaded machine; about 10 s idle.
  }, 150_000);
});
