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

  /** The run times of every job of the schedule, through every page of the listing. */
  async function fireTimesOf(server: ServerProcess, token: string, schedule: Record<string, unknown>): Promise<string[]> {
    const jobs: { runAt: string; scheduleId: string }[] = [];
    let cursor: string | null = null;
    do {
      const page = await call(server, token, 'GET', `/v1/jobs?limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      jobs.push(...(page['items'] as { runAt: string; scheduleId: string }[]));
      cursor = page['nextCursor'] as string | null;
    } while (cursor);
    return jobs.filter((job) => job.scheduleId === schedule['id']).map((job) => job.runAt);
  }

  async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('never creates two jobs for one fire time', async () => {
    mkdirSync(env.JOBLINE_HANDLERS_DIR, { recursive: true });
    writeFileSync(path.join(env.JOBLINE_HANDLERS_DIR, 'tick.mjs'), `export default { type: 'tick', run: async () => 'tock' };\n`);

    const first = await startServerProcess(env);
    servers.push(first);
    const token = await login(first);
    const schedule = await call(first, token, 'POST', '/v1/schedules', { name: 'ticker', cron: '* * * * * *', job: { type: 'tick' } });
    // Two fire times before the kill (however long a loaded machine takes to reach them)…
    await until(async () => (await fireTimesOf(first, token, schedule)).length >= 2, 20_000, 'two fire times before the kill');
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await startServerProcess(env);
    servers.push(second);
    const token2 = await login(second);
    // …and two more after the restart.
    const beforeRestart = (await fireTimesOf(second, token2, schedule)).length;
    await until(async () => (await fireTimesOf(second, token2, schedule)).length >= beforeRestart + 2, 20_000, 'two fire times after the restart');
    await call(second, token2, 'PATCH', `/v1/schedules/${String(schedule['id'])}`, { enabled: false });

    const fireTimes = await fireTimesOf(second, token2, schedule);
    expect(fireTimes.length).toBeGreaterThanOrEqual(4);
    // No fire time twice.
    expect(new Set(fireTimes).size).toBe(fireTimes.length);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 120_000);
});
