import { afterEach, describe, expect, it } from 'vitest';
import type { TestRuntime } from '../helpers/runtime.js';
import { Client, eventually, newJob, probe, sleepMs, targets } from './harness.js';


describe.each(targets)('leases and recovery on the $name engine', (target) => {
  const servers: TestRuntime[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.close();
    probe.reset();
  });
  const start = async (options: Parameters<typeof target.start>[0] = {}) => {
    const server = await target.start(options);
    servers.push(server);
    return server;
  };

  /**
   * Claims the one job on the `manual` queue, polling: a job the sweeper just put back reads as
   * queued once its row commits, and the BullMQ engine only enqueues its ticket after that commit.
   */
  const claimAgain = async (engine: TestRuntime['runtime']['engine'], workerId: string, leaseMs: number) => {
    let claims: Awaited<ReturnType<typeof engine.claimJobs>> = [];
    await eventually(async () => {
      claims = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId, leaseMs });
      return claims.length > 0;
    }, `${workerId} to claim the job`);
    return claims[0]!;
  };

  it('returns a job whose lease expired to the queue, and fences the old holder', async () => {
    const server = await start();
    const { engine } = server.runtime;
    const ownerId = (await server.login()).userId;
    const [added] = await engine.addJobs([newJob(ownerId)]);
    const jobId = added!.job.id;
    const [first] = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w1', leaseMs: 100 });
    expect(first?.attempt).toBe(1);
    // No renewal: the sweeper finds the lease expired and puts the job back.
    await eventually(async () => (await engine.getJob(jobId))?.state === 'queued', 'the sweeper to put the job back');
    expect((await engine.getJob(jobId))?.state).toBe('queued');
    const second = await claimAgain(engine, 'w2', 10_000);
    expect(second.job.id).toBe(jobId);
    expect(second.attempt).toBe(1);

    const stale = await engine.completeJob({ jobId, token: first!.token }, 'from the first worker');
    expect(stale).toEqual({ accepted: false, reason: 'lease_lost' });
    expect(await engine.appendEvents({ jobId, token: first!.token }, [{ type: 'job.log', data: { message: 'late' } }])).toBe(false);
    expect(await engine.renewLeases([{ jobId, token: first!.token }], 1000)).toEqual([jobId]);

    const fresh = await engine.completeJob({ jobId, token: second.token }, 'from the second worker');
    expect(fresh.accepted).toBe(true);
    const job = await engine.getJob(jobId);
    expect(job).toMatchObject({ state: 'completed', result: 'from the second worker' });
    const events = await engine.listEvents(jobId, 0, 100);
    expect(events.map((event) => event.type)).toEqual(['job.created', 'job.active', 'job.retrying', 'job.active', 'job.completed']);
    expect(events[2]?.data['error']).toMatchObject({ code: 'JOBLINE_LEASE_EXPIRED' });
  });

  it('keeps a renewed lease', async () => {
    const server = await start();
    const { engine } = server.runtime;
    const [added] = await engine.addJobs([newJob((await server.login()).userId)]);
    // Renewed every 400 ms for 2.8 s, a lease of 2 s outlives its first term; the 1.6 s of
    // slack keeps a loaded machine (a stalled event loop) from expiring it between renewals.
    const [claim] = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w1', leaseMs: 2000 });
    for (let i = 0; i < 7; i += 1) {
      await sleepMs(400);
      expect(await engine.renewLeases([{ jobId: added!.job.id, token: claim!.token }], 2000)).toEqual([]);
    }
    expect((await engine.getJob(added!.job.id))?.state).toBe('active');
  });

  it('fails a job whose worker died JOBLINE_MAX_CRASHES times', async () => {
    const server = await start({ env: { JOBLINE_MAX_CRASHES: '2' } });
    const { engine } = server.runtime;
    const [added] = await engine.addJobs([newJob((await server.login()).userId, { maxAttempts: 10 })]);
    const jobId = added!.job.id;
    for (let crash = 1; crash <= 2; crash += 1) {
      expect((await claimAgain(engine, `w${crash}`, 50)).job.id).toBe(jobId);
      await eventually(async () => (await engine.getJob(jobId))?.state !== 'active', `the sweeper to recover crash ${crash}`);
    }
    const job = await engine.getJob(jobId);
    expect(job).toMatchObject({ state: 'failed', error: { code: 'JOBLINE_JOB_CRASHED' } });
  });

  it('recovers, after a restart, a job the previous process left active', async () => {
    const first = await start({ keepDataDir: true });
    const ownerId = (await first.login()).userId;
    // A type no handler serves, claimed by hand: a worker that then dies with the process.
    const [added] = await first.runtime.engine.addJobs([newJob(ownerId)]);
    const jobId = added!.job.id;
    await first.runtime.engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'doomed', leaseMs: 3_600_000 });
    expect((await first.runtime.engine.getJob(jobId))?.state).toBe('active');
    await first.close();
    servers.splice(servers.indexOf(first), 1);

    // The lease has an hour to run, but the process that held it is gone: the job is back at once.
    const second = await start({ dataDir: first.dataDir });
    const { engine } = second.runtime;
    expect(await engine.getJob(jobId)).toMatchObject({ state: 'queued', attemptsMade: 0 });
    expect((await engine.listEvents(jobId, 0, 10)).at(-1)).toMatchObject({ type: 'job.retrying', data: { error: { code: 'JOBLINE_LEASE_EXPIRED' } } });
    const [claim] = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'survivor', leaseMs: 10_000 });
    expect(claim?.job.id).toBe(jobId);
    expect((await engine.completeJob({ jobId, token: claim!.token }, 'recovered')).accepted).toBe(true);
    expect(await engine.getJob(jobId)).toMatchObject({ state: 'completed', result: 'recovered', attemptsMade: 1 });
  });

  it('hands unfinished jobs back at once on shutdown, without using up an attempt', async () => {
    const first = await start({ env: { JOBLINE_SHUTDOWN_GRACE: '100' }, keepDataDir: true });
    const client = new Client(first, (await first.login()).accessToken);
    // The first run would take 30 s: closing well before that proves shutdown did not wait for
    // it (the bound leaves a loaded machine room); the run after the restart is short.
    const job = await client.submit({ type: 'sleepy', payload: { ms: 30_000, thenMs: 200 }, attempts: 1 });
    await client.waitFor(job.id, (view) => view.state === 'active');
    const started = Date.now();
    await first.close();
    servers.splice(servers.indexOf(first), 1);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(probe.aborted.has(job.id)).toBe(true);

    const second = await start({ dataDir: first.dataDir });
    const after = new Client(second, (await second.login()).accessToken);
    const queued = await after.get(job.id);
    expect(['queued', 'active', 'completed']).toContain(queued.state);
    const done = await after.waitFor(job.id, undefined, 15_000);
    expect(done).toMatchObject({ state: 'completed', attemptsMade: 1 });
  }, 30_000);
});
