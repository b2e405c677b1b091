import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { callServer, loginTo, startServerProcess, type ServerProcess } from '../helpers/process.js';

/** Kills a real server with SIGKILL while jobs run, restarts it on the same data, and checks nothing is lost. */
describe('crash recovery', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'jobline-crash-'));
  const dataDir = path.join(root, 'data');
  const handlersDir = path.join(root, 'handlers');
  const servers: ServerProcess[] = [];
  afterAll(() => {
    for (const server of servers) if (server.child.exitCode === null) server.child.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  const env = {
    JOBLINE_DATA_DIR: dataDir,
    JOBLINE_HANDLERS_DIR: handlersDir,
    JOBLINE_ADMIN_EMAIL: 'crash@example.com',
    JOBLINE_ADMIN_PASSWORD: 'crash-password-1',
    JOBLINE_LOG_LEVEL: 'info',
  };

  const login = (server: ServerProcess) => loginTo(server, env.JOBLINE_ADMIN_EMAIL, env.JOBLINE_ADMIN_PASSWORD);
  const api = (server: ServerProcess, token: string, method: string, url: string, body?: unknown) => callServer(server, token, method, url, body);

  async function counts(server: ServerProcess, token: string): Promise<Record<string, number>> {
    const queues = await callServer<{ name: string; counts: Record<string, number> }[]>(server, token, 'GET', '/v1/admin/queues');
    return queues.body.find((queue) => queue.name === 'default')?.counts ?? {};
  }

  async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  it('completes every job after a SIGKILL with 100 jobs active', async () => {
    // The first run of each job outlives the kill; after the restart every job finishes quickly.
    writeFileSync(path.join(root, 'marker'), '');
    const handler = `
      import { existsSync } from 'node:fs';
      export default {
        type: 'work',
        concurrency: 200,
        async run(ctx) {
          const slow = existsSync(${JSON.stringify(path.join(root, 'marker'))});
          await new Promise((resolve) => setTimeout(resolve, slow ? 60000 : 20));
          return { attempt: ctx.attempt };
        },
      };
    `;
    mkdirSync(handlersDir, { recursive: true });
    writeFileSync(path.join(handlersDir, 'work.mjs'), handler);

    const first = await startServerProcess(env);
    servers.push(first);
    const token = await login(first);
    const submitted = await api(first, token, 'POST', '/v1/jobs/bulk', {
      jobs: Array.from({ length: 100 }, (_value, index) => ({ type: 'work', payload: { index } })),
    });
    expect(submitted.status).toBe(201);
    const ids = (submitted.body['jobs'] as { id: string }[]).map((job) => job.id);
    await until(async () => (await counts(first, token))['active'] === 100, 15_000, '100 active jobs');

    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();
    rmSync(path.join(root, 'marker'));

    const second = await startServerProcess(env);
    servers.push(second);
    const token2 = await login(second);
    await until(async () => (await counts(second, token2))['completed'] === 100, 30_000, '100 completed jobs');
    const finalCounts = await counts(second, token2);
    expect(finalCounts).toMatchObject({ completed: 100, active: 0, queued: 0, failed: 0 });
    for (const id of ids) {
      const job = await api(second, token2, 'GET', `/v1/jobs/${id}`);
      // The killed attempt did not finish, so it does not count against the job's attempts.
      expect(job.body).toMatchObject({ state: 'completed', attemptsMade: 1, result: { attempt: 1 } });
    }
    const events = await api(second, token2, 'GET', `/v1/jobs/${ids[0]}/events`);
    expect((events.body['items'] as { type: string }[]).map((event) => event.type)).toEqual([
      'job.created',
      'job.active',
      'job.retrying',
      'job.active',
      'job.completed',
    ]);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 90_000);
});
