import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { callServer, loginTo, startServerProcess, type ServerProcess } from '../helpers/process.js';

/** Kills a server with SIGKILL while an every-second schedule fires, restarts it, and looks for doubled fire times. */
describe('schedules across a crash', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'jobline-sched-crash-'));
  const servers: ServerProcess[] = [];
  afterAll(() => {
    for (const server of servers) if (server.child.exitCode === null) server.child.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });
  const env = {
    JOBLINE_DATA_DIR: path.join(root, 'data'),
    JOBLINE_HANDLERS_DIR: path.join(root, 'handlers'),
    JOBLINE_ADMIN_EMAIL: 'tick@example.com',
    JOBLINE_ADMIN_PASSWORD: 'tick-password-1',
  };

  const call = async (server: ServerProcess, token: string | null, method: string, url: string, body?: unknown) =>
    (await callServer(server, token, method, url, body)).body;
  const login = (server: ServerProcess) => loginTo(server, env.JOBLINE_ADMIN_EMAIL, env.JOBLINE_ADMIN_PASSWORD);

  it('never creates two jobs for one fire time', async () => {
    mkdirSync(env.JOBLINE_HANDLERS_DIR, { recursive: true });
    writeFileSync(path.join(env.JOBLINE_HANDLERS_DIR, 'tick.mjs'), `export default { type: 'tick', run: async () => 'tock' };\n`);

    const first = await startServerProcess(env);
    servers.push(first);
    const token = await login(first);
    const schedule = await call(first, token, 'POST', '/v1/schedules', { name: 'ticker', cron: '* * * * * *', job: { type: 'tick' } });
    await new Promise((resolve) => setTimeout(resolve, 2600));
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await startServerProcess(env);
    servers.push(second);
    const token2 = await login(second);
    await new Promise((resolve) => setTimeout(resolve, 2600));
    await call(second, token2, 'PATCH', `/v1/schedules/${String(schedule['id'])}`, { enabled: false });

    const jobs: { runAt: string; scheduleId: string }[] = [];
    let cursor: string | null = null;
    do {
      const page = await call(second, token2, 'GET', `/v1/jobs?limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      jobs.push(...(page['items'] as { runAt: string; scheduleId: string }[]));
      cursor = page['nextCursor'] as string | null;
    } while (cursor);
    const fireTimes = jobs.filter((job) => job.scheduleId === schedule['id']).map((job) => job.runAt);
    // About two fire times before the kill and two after it, with no duplicate.
    expect(fireTimes.length).toBeGreaterThanOrEqual(3);
    expect(new Set(fireTimes).size).toBe(fireTimes.length);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 60_000);
});
