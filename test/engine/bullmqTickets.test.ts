import { afterEach, describe, expect, it } from 'vitest';
import type { Job as BullJob } from 'bullmq';
import { bullQueueName, createBullWorker } from '../../src/config/bull.js';
import type { BullMqEngine } from '../../src/engine/bullmq/engine.js';
import { newJob, targets } from '../conformance/harness.js';
import { REDIS_TEST_URL, testRedisClient } from '../helpers/redis.js';
import type { TestRuntime } from '../helpers/runtime.js';

const bullmq = targets.find((target) => target.name === 'bullmq');

/**
 * A worker process can die while it takes tickets: after BullMQ handed it one and before it
 * removed it, or after removing it and before its lease committed in PostgreSQL. Either way the
 * job is still queued in PostgreSQL; reconciliation must put it back on BullMQ.
 */
describe.skipIf(!bullmq)('BullMQ engine: tickets of a taker that died', () => {
  const servers: TestRuntime[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.close();
  });

  const setUp = async () => {
    const server = await bullmq!.start();
    servers.push(server);
    const engine = server.runtime.engine as BullMqEngine;
    const [added] = await engine.addJobs([newJob((await server.login()).userId)]);
    return { server, engine, jobId: added!.job.id };
  };

  it('re-enqueues a job whose ticket a dead instance took but never removed', async () => {
    const { server, engine, jobId } = await setUp();
    const prefix = server.runtime.config.redisPrefix;
    // A process that is not alive (no heartbeat) takes the ticket through BullMQ, then "dies".
    const connection = testRedisClient(REDIS_TEST_URL);
    const worker = createBullWorker(bullQueueName('manual', 'unhandled'), connection, prefix);
    try {
      const taken = (await worker.getNextJob('deadinstance.token', { block: false })) as BullJob | undefined;
      expect(taken?.id).toMatch(new RegExp(`^${jobId}-\\d+$`));
      expect(await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w', leaseMs: 10_000 })).toEqual([]);

      expect(await engine.reconcile()).toBe(1);
      const [claim] = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w', leaseMs: 10_000 });
      expect(claim?.job.id).toBe(jobId);
    } finally {
      await worker.close(true);
      connection.disconnect();
    }
  });

  it('leaves alone a ticket a live instance is taking', async () => {
    const { server, engine, jobId } = await setUp();
    const prefix = server.runtime.config.redisPrefix;
    const connection = testRedisClient(REDIS_TEST_URL);
    const worker = createBullWorker(bullQueueName('manual', 'unhandled'), connection, prefix);
    try {
      // An instance with a heartbeat is between taking the ticket and removing it.
      await connection.zadd(`${prefix}engine:instances`, Date.now(), 'liveinstance');
      const taken = (await worker.getNextJob('liveinstance.token', { block: false })) as BullJob | undefined;
      expect(taken?.id).toMatch(new RegExp(`^${jobId}-\\d+$`));
      expect(await engine.reconcile()).toBe(0);
      expect(await taken!.getState()).toBe('active');
    } finally {
      await worker.close(true);
      connection.disconnect();
    }
  });

  it('re-enqueues a job whose ticket was removed but whose lease never committed', async () => {
    const { server, engine, jobId } = await setUp();
    const prefix = server.runtime.config.redisPrefix;
    const redis = testRedisClient(REDIS_TEST_URL);
    await redis.connect();
    try {
      // The ticket is gone from BullMQ (removed by a taker that died before its transaction committed).
      const keys = await redis.keys(`${prefix}bull:${bullQueueName('manual', 'unhandled')}:${jobId}-*`);
      expect(keys).toHaveLength(1);
      const queueKey = `${prefix}bull:${bullQueueName('manual', 'unhandled')}`;
      const ticket = keys[0]!.slice(queueKey.length + 1);
      await redis.zrem(`${queueKey}:prioritized`, ticket);
      await redis.del(keys[0]!);
    } finally {
      redis.disconnect();
    }
    expect(await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w', leaseMs: 10_000 })).toEqual([]);
    expect(await engine.getJob(jobId)).toMatchObject({ state: 'queued' });
    expect(await engine.reconcile()).toBe(1);
    const [claim] = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w', leaseMs: 10_000 });
    expect(claim?.job.id).toBe(jobId);
  });
});
