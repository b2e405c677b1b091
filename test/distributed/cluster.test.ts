import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { createTestDatabase, postgresReachable } from '../helpers/postgres.js';
import { callServer, loginTo, startServerProcess, type ServerProcess } from '../helpers/process.js';
import { deleteKeys, distributedEnv, redisReachable, testPrefix } from '../helpers/redis.js';

const reachable = (await postgresReachable()) && (await redisReachable());

const JOBS = 2000;
/** Jobs of the `work` type one worker process runs at once: the most a killed worker can leave half-done. */
const CONCURRENCY = 20;
const KILL_AFTER_COMPLETIONS = 400;

interface PublicJob {
  id: string;
  type: string;
  state: string;
  attemptsMade: number;
  runAt: string;
  scheduleId: string | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * The whole distributed deployment as real processes: 2 api, 2 worker and 2 scheduler
 * processes on one PostgreSQL database and one Redis prefix. A worker is killed with SIGKILL
 * while it runs jobs; a Socket.IO client on one API process follows everything.
 */
describe.skipIf(!reachable)('a distributed cluster of 2 api, 2 worker and 2 scheduler processes', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'jobline-cluster-'));
  const handlersDir = path.join(root, 'handlers');
  const runsFile = path.join(root, 'runs.log');
  const holdFile = path.join(root, 'hold');
  const heldFile = path.join(root, 'held.log');
  const prefix = testPrefix();
  const admin = { email: 'cluster@example.com', password: 'cluster-password-1' };
  const processes: { role: string; server: ServerProcess }[] = [];
  const sockets: Socket[] = [];
  let dropDatabase: (() => Promise<void>) | null = null;
  let apis: ServerProcess[] = [];
  let workers: ServerProcess[] = [];
  let killed: ServerProcess | null = null;
  let token = '';

  const api = <T = Record<string, unknown>>(server: ServerProcess, method: string, url: string, body?: unknown) =>
    callServer<T>(server, token, method, url, body);
  const alive = (server: ServerProcess) => server.child.exitCode === null && server.child.signalCode === null;
  /** Processes that stopped although the test did not kill them (a crash). */
  const stopped = () => processes.filter(({ server }) => server !== killed && !alive(server)).map(({ role, server }) => `${role} ${server.child.pid}`);

  /** Every job of a type, through every page of the listing. */
  async function jobsOfType(server: ServerProcess, type: string): Promise<PublicJob[]> {
    const jobs: PublicJob[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `/v1/jobs?type=${type}&limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = await api<{ items: PublicJob[]; nextCursor: string | null }>(server, 'GET', query);
      expect(page.status).toBe(200);
      jobs.push(...page.body.items);
      cursor = page.body.nextCursor;
    } while (cursor);
    return jobs;
  }

  /** Prints the end of every process's output when a test fails: the evidence of what went wrong. */
  function showLogsOnFailure(): void {
    onTestFailed(() => {
      for (const { role, server } of processes) {
        console.error(`--- ${role} pid ${server.child.pid} (exit ${server.child.exitCode ?? server.child.signalCode ?? 'running'})\n${server.output().slice(-4000)}`);
      }
    });
  }

  beforeAll(async () => {
    const database = await createTestDatabase();
    dropDatabase = database.drop;
    mkdirSync(handlersDir, { recursive: true });
    // Each run leaves a line "<jobId> <pid>", so the test counts executions, re-executions included.
    // The worker whose pid is in the hold file keeps every job it starts, so it dies holding a known set.
    writeFileSync(
      path.join(handlersDir, 'work.mjs'),
      `import { appendFileSync, readFileSync } from 'node:fs';
      export default {
        type: 'work',
        concurrency: ${CONCURRENCY},
        async run(ctx) {
          appendFileSync(${JSON.stringify(runsFile)}, ctx.job.id + ' ' + process.pid + '\\n');
          if (readFileSync(${JSON.stringify(holdFile)}, 'utf8') === String(process.pid)) {
            appendFileSync(${JSON.stringify(heldFile)}, ctx.job.id + '\\n');
            await new Promise((resolve) => setTimeout(resolve, 600000));
          }
          await new Promise((resolve) => setTimeout(resolve, 40));
          return { pid: process.pid };
        },
      };`,
    );
    writeFileSync(path.join(handlersDir, 'tick.mjs'), `export default { type: 'tick', run: () => ({ ticked: true }) };`);
    writeFileSync(runsFile, '');
    writeFileSync(holdFile, '');

    const start = async (role: 'api' | 'worker' | 'scheduler') => {
      const server = await startServerProcess({
        JOBLINE_DATABASE_URL: database.url,
        ...distributedEnv(prefix),
        JOBLINE_ROLE: role,
        JOBLINE_HANDLERS_DIR: handlersDir,
        JOBLINE_ADMIN_EMAIL: admin.email,
        JOBLINE_ADMIN_PASSWORD: admin.password,
        // A crashed worker's jobs come back within seconds, and a stopped process exits promptly.
        JOBLINE_LEASE: '5000',
        JOBLINE_SWEEP_INTERVAL: '200',
        JOBLINE_SHUTDOWN_GRACE: '2000',
        JOBLINE_RATE_LIMIT: '0',
        JOBLINE_LOG_LEVEL: 'warn',
      });
      processes.push({ role, server });
      return server;
    };
    // One process migrates the database and creates the admin; the others find both done.
    const firstApi = await start('api');
    const rest = await Promise.allSettled([start('api'), start('worker'), start('worker'), start('scheduler'), start('scheduler')]);
    for (const result of rest) if (result.status === 'rejected') throw result.reason;
    const byRole = (role: string) => processes.filter((entry) => entry.role === role).map((entry) => entry.server);
    apis = [firstApi, ...byRole('api').filter((server) => server !== firstApi)];
    workers = byRole('worker');
    token = await loginTo(firstApi, admin.email, admin.password);
  }, 90_000);

  afterAll(async () => {
    for (const socket of sockets) socket.close();
    await Promise.all(
      processes.map(async ({ server }) => {
        if (!alive(server)) return;
        server.child.kill('SIGTERM');
        const timer = setTimeout(() => server.child.kill('SIGKILL'), 10_000);
        await server.exited;
        clearTimeout(timer);
      }),
    );
    await dropDatabase?.();
    await deleteKeys(prefix);
    rmSync(root, { recursive: true, force: true });
  }, 60_000);

  it('completes 2,000 jobs submitted through both API processes although a worker is killed midway, and streams every completion to a socket', async () => {
    showLogsOnFailure();
    const socket = connect(apis[0]!.baseUrl, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    const seenCompleted = new Set<string>();
    socket.on('job.completed', (event: { jobId: string }) => seenCompleted.add(event.jobId));
    expect(await socket.timeout(5000).emitWithAck('subscribe', { all: true })).toEqual({ ok: true });

    // Once a fifth of the jobs are done, a worker keeps the jobs it starts until all its slots are
    // taken, and is killed then: it dies with a known set of jobs in flight, and more are waiting.
    // (Killed at a random instant it may instead die between taking tickets and leasing their jobs.)
    const victim = workers[1]!;
    const held = () => (existsSync(heldFile) ? readFileSync(heldFile, 'utf8').split('\n').filter(Boolean) : []);
    let completedAtKill = 0;
    let inFlight: string[] = [];
    const killing = until(() => seenCompleted.size >= KILL_AFTER_COMPLETIONS, 60_000, `${KILL_AFTER_COMPLETIONS} completions`).then(async () => {
      writeFileSync(holdFile, String(victim.child.pid));
      await until(() => held().length === CONCURRENCY, 10_000, `the worker to hold ${CONCURRENCY} jobs`);
      completedAtKill = seenCompleted.size;
      inFlight = held();
      victim.child.kill('SIGKILL');
      killed = victim;
    });
    // Awaited below; a timeout must not surface first as an unhandled rejection.
    killing.catch(() => undefined);

    const startedAt = Date.now();
    const halves = await Promise.all(
      apis.map((server, half) =>
        api<{ jobs: PublicJob[] }>(server, 'POST', '/v1/jobs/bulk', {
          jobs: Array.from({ length: JOBS / 2 }, (_value, index) => ({ type: 'work', payload: { half, index } })),
        }),
      ),
    );
    for (const half of halves) expect(half.status).toBe(201);
    const ids = halves.flatMap((half) => half.body.jobs.map((job) => job.id));
    expect(new Set(ids).size).toBe(JOBS);

    await killing;
    expect(await victim.exited).toBeNull();
    expect(victim.child.signalCode).toBe('SIGKILL');
    const killedAt = Date.now();
    expect(completedAtKill).toBeLessThan(JOBS);

    // PostgreSQL is the source of truth; the socket then has a moment to deliver the last events.
    const queueCounts = async () => {
      const queues = await api<{ name: string; counts: Record<string, number> }[]>(apis[1]!, 'GET', '/v1/admin/queues');
      return queues.body.find((queue) => queue.name === 'default')?.counts ?? {};
    };
    // The killed worker's heartbeat expires within 5 s; its jobs are then taken by the other worker.
    await until(async () => (await queueCounts())['completed'] === JOBS, 30_000, `${JOBS} completed jobs`);
    const elapsedMs = Date.now() - startedAt;
    const recoveryMs = Date.now() - killedAt;
    expect(await queueCounts()).toMatchObject({ completed: JOBS, active: 0, queued: 0, failed: 0 });
    await until(() => ids.every((id) => seenCompleted.has(id)), 10_000, 'the socket to see every completion').catch(() => undefined);
    expect(ids.filter((id) => !seenCompleted.has(id))).toEqual([]);

    // Every job ran, finished once, and used one attempt: an interrupted run does not count against it.
    const jobs = await jobsOfType(apis[1]!, 'work');
    expect(jobs.map((job) => job.id).sort()).toEqual([...ids].sort());
    expect(jobs.filter((job) => job.state !== 'completed' || job.attemptsMade !== 1)).toEqual([]);

    // Runs again exactly what the killed worker held (at most its concurrency), each once more elsewhere.
    const runs = new Map<string, number[]>();
    for (const line of readFileSync(runsFile, 'utf8').split('\n').filter(Boolean)) {
      const [jobId = '', pid = ''] = line.split(' ');
      runs.set(jobId, [...(runs.get(jobId) ?? []), Number(pid)]);
    }
    const executions = [...runs.values()].reduce((sum, pids) => sum + pids.length, 0);
    const reExecuted = [...runs].filter(([, pids]) => pids.length > 1);
    const byVictim = [...runs.values()].flat().filter((pid) => pid === victim.child.pid).length;
    console.log(
      `cluster: ${JOBS} jobs in ${elapsedMs} ms (the last ${recoveryMs} ms after the kill), ${executions} executions ` +
        `(${executions - JOBS} re-executions), ${byVictim} runs on the killed worker, ${inFlight.length} in flight on it ` +
        `when killed, ${completedAtKill} completions seen before the kill`,
    );
    expect([...runs.keys()].sort()).toEqual([...ids].sort());
    expect(inFlight).toHaveLength(CONCURRENCY);
    expect(executions - JOBS).toBe(inFlight.length);
    expect(reExecuted.map(([jobId]) => jobId).sort()).toEqual([...inFlight].sort());
    for (const [, pids] of reExecuted) {
      // The interrupted run was the killed worker's; the one that finished, a survivor's.
      expect(pids).toHaveLength(2);
      expect(pids[0]).toBe(victim.child.pid);
      expect(pids[1]).not.toBe(victim.child.pid);
    }
    expect(stopped()).toEqual([]);
  }, 90_000);

  it('creates one job per fire time of a `* * * * * *` schedule with two scheduler processes', async () => {
    showLogsOnFailure();
    const created = await api<{ id: string; createdAt: string }>(apis[0]!, 'POST', '/v1/schedules', {
      name: 'every second',
      cron: '* * * * * *',
      job: { type: 'tick' },
    });
    expect(created.status).toBe(201);
    const scheduleId = created.body.id;
    await sleep(6000);
    const disabled = await api<{ enabled: boolean; updatedAt: string }>(apis[1]!, 'PATCH', `/v1/schedules/${scheduleId}`, { enabled: false });
    expect(disabled.status).toBe(200);
    expect(disabled.body.enabled).toBe(false);
    const from = Date.parse(created.body.createdAt);
    const to = Date.parse(disabled.body.updatedAt);
    // A scheduler that read the schedule as due just before it was disabled still creates that job:
    // wait until the jobs stop changing (and have all run) for a second and a half.
    let jobs: PublicJob[] = [];
    let settled = '';
    let settledAt = Date.now();
    await until(
      async () => {
        jobs = await jobsOfType(apis[1]!, 'tick');
        const now = jobs.map((job) => `${job.id}:${job.state}`).sort().join(',');
        if (now !== settled) [settled, settledAt] = [now, Date.now()];
        return jobs.every((job) => job.state === 'completed') && Date.now() - settledAt >= 1500;
      },
      20_000,
      'the schedule’s jobs to be created and complete',
    );

    const fireTimes = jobs.map((job) => Date.parse(job.runAt)).sort((a, b) => a - b);
    const wholeSeconds = Math.floor(to / 1000) - Math.floor(from / 1000);
    console.log(`cluster: schedule enabled for ${to - from} ms (${wholeSeconds} fire times), ${jobs.length} jobs`);
    expect(jobs.every((job) => job.scheduleId === scheduleId)).toBe(true);
    expect(new Set(fireTimes).size).toBe(jobs.length);
    // One job per second from the first whole second after creating the schedule, none missed and
    // none doubled, never after it was disabled.
    expect(jobs.length).toBeLessThanOrEqual(wholeSeconds);
    expect(fireTimes[0]).toBe((Math.floor(from / 1000) + 1) * 1000);
    expect(fireTimes.every((at) => at % 1000 === 0 && at > from && at <= to)).toBe(true);
    expect(fireTimes.slice(1).map((at, index) => at - fireTimes[index]!)).toEqual(Array(jobs.length - 1).fill(1000));
    // Up to the disabling: the last second may be in flight, and a scheduler process held up by a
    // loaded machine may not have read one or two more before the schedule was disabled.
    expect(fireTimes.at(-1)).toBeGreaterThanOrEqual(Math.floor(to / 1000) * 1000 - 3000);

    expect(await jobsOfType(apis[0]!, 'tick')).toHaveLength(jobs.length);
    expect(stopped()).toEqual([]);
  }, 60_000);
});
