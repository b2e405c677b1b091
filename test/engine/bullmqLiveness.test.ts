import { afterEach, describe, expect, it } from 'vitest';
import { eventually, newJob, sleepMs } from '../conformance/harness.js';
import { createTestDatabase, postgresReachable } from '../helpers/postgres.js';
import { deleteKeys, distributedEnv, REDIS_TEST_URL, redisReachable, redisServerAvailable, startPrivateRedis, testPrefix, testRedisClient } from '../helpers/redis.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

// These checks throw under CI=true when their service is missing, so CI never skips this file.
const runnable = (await postgresReachable()) && (await redisReachable()) && (await redisServerAvailable());

describe.skipIf(!runnable)('BullMQ engine: liveness and Redis outages', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start(redisUrl = REDIS_TEST_URL): Promise<{ server: TestRuntime; prefix: string; ownerId: string }> {
    const database = await createTestDatabase();
    cleanups.push(database.drop);
    const prefix = testPrefix();
    // A private Redis is killed by its test, taking its keys along.
    if (redisUrl === REDIS_TEST_URL) cleanups.push(() => deleteKeys(prefix));
    // A Redis data set this deployment already used: nobody is in the grace period of a fresh (or wiped) Redis.
    const setup = testRedisClient(redisUrl);
    await setup.connect();
    await setup.set(`${prefix}engine:epoch`, 'earlier');
    setup.disconnect();
    const server = await startTestRuntime({ postgresUrl: database.url, env: { JOBLINE_SWEEP_INTERVAL: '100', ...distributedEnv(prefix, redisUrl) } });
    let closed = false;
    cleanups.push(async () => {
      if (!closed) await server.close();
    });
    const close = server.close.bind(server);
    server.close = async () => {
      closed = true;
      await close();
    };
    return { server, prefix, ownerId: (await server.login()).userId };
  }

  it('waits for the lease of an instance that stopped heartbeating but is still connected, and recovers at once when its connection goes', async () => {
    const { server, prefix, ownerId } = await start();
    const { engine } = server.runtime;
    const [added] = await engine.addJobs([newJob(ownerId)]);
    const jobId = added!.job.id;
    expect(await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'ghost', leaseMs: 600_000 })).toHaveLength(1);
    // The job is held by "ghost", an instance whose event loop is blocked: its heartbeat is long
    // stale, but its Redis connection (this client) is open. Set up in this order, as the engine's
    // own heartbeat does, so no sweep (every 100 ms) in between sees a lease holder without a
    // heartbeat, or a stale heartbeat without a connection (both mean a dead instance).
    const ghost = testRedisClient();
    await ghost.connect();
    cleanups.push(async () => ghost.disconnect());
    const clientId = String(await ghost.client('ID'));
    await ghost.hset(`${prefix}engine:instance-clients`, 'ghost', clientId);
    await ghost.zadd(`${prefix}engine:instances`, 0, 'ghost');
    await server.runtime.database.db.updateTable('jobs').set({ lease_token: 'ghost.token' }).where('id', '=', jobId).execute();

    // Many sweeps later, the job is still the ghost's: it may still be running it.
    await sleepMs(1500);
    expect((await engine.getJob(jobId))?.state).toBe('active');
    expect(await ghost.zscore(`${prefix}engine:instances`, 'ghost')).not.toBeNull();

    // The process dies: its connections close, and its job comes back long before the lease would expire.
    ghost.disconnect();
    await eventually(async () => (await engine.getJob(jobId))?.state === 'queued', 'the dead instance\'s job to be recovered');
    // Its ticket goes on BullMQ just after the row commits as queued: claim until it is there.
    let again: Awaited<ReturnType<typeof engine.claimJobs>> = [];
    await eventually(async () => (again = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w2', leaseMs: 10_000 })).length > 0, 'w2 to claim the recovered job');
    expect(again[0]?.job.id).toBe(jobId);
  });

  it('keeps sweeping, cancels and stops promptly while Redis is down', async () => {
    const redis = await startPrivateRedis();
    cleanups.push(() => redis.stop());
    const { server, ownerId } = await start(redis.url);
    const { engine } = server.runtime;
    const [expiring, waiting] = await engine.addJobs([newJob(ownerId, { ttlMs: 1500 }), newJob(ownerId)]);
    await redis.stop();

    // The sweep's PostgreSQL side goes on: the ttl still fails the job that did not start in time.
    await eventually(async () => (await engine.getJob(expiring!.job.id))?.state === 'failed', 'the ttl to expire a job during the outage');
    expect(await engine.getJob(expiring!.job.id)).toMatchObject({ error: { code: 'JOBLINE_JOB_EXPIRED' } });

    // Cancelling needs only PostgreSQL; the ticket left on BullMQ is dropped when someone takes it.
    const cancelStarted = Date.now();
    expect(await engine.cancelJob(waiting!.job.id)).toMatchObject({ state: 'cancelled' });
    expect(Date.now() - cancelStarted).toBeLessThan(5000);

    const stopStarted = Date.now();
    await server.close();
    // Bounded waits for Redis (2 s each), never the process's kill timer.
    expect(Date.now() - stopStarted).toBeLessThan(15_000);
  }, 30_000);
});
