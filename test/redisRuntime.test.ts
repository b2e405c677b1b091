import { afterEach, describe, expect, it } from 'vitest';
import { createRedisRuntime, type RedisRuntime } from '../src/redisRuntime.js';
import type { JobEvent } from '../src/engine/types.js';
import { countKeys, deleteKeys, memoryLogger, REDIS_TEST_URL, redisReachable, testPrefix, waitUntil } from './helpers/redis.js';

const reachable = await redisReachable();

describe('the Redis runtime of a distributed process', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it.skipIf(!reachable)('opens the bus, counters and readiness check on one prefix, and closes every connection', async () => {
    const prefix = testPrefix();
    cleanups.push(() => deleteKeys(prefix));
    const { logger } = memoryLogger();
    const runtime: RedisRuntime = await createRedisRuntime({ redisUrl: REDIS_TEST_URL, role: 'api' }, logger, prefix);
    cleanups.push(() => runtime.close());

    expect(runtime.readiness.name).toBe('redis');
    await runtime.readiness.check();
    const heard: JobEvent[][] = [];
    runtime.bus.onJobEvents((events) => heard.push(events));
    runtime.bus.publishJobEvents([{ type: 'job.created', jobId: 'j', seq: 1, at: 1, data: {}, queue: 'q', ownerId: 'o' }]);
    await waitUntil(() => heard.length === 1, 'the event');
    expect((await runtime.counters.hit('login:ip:203.0.113.1', 60_000)).count).toBe(1);
    expect(await countKeys(`${prefix}counter:`)).toBe(1);

    await Promise.all([runtime.close(), runtime.close()]);
    expect(runtime.commands.status).toBe('end');
    await expect(runtime.readiness.check()).rejects.toThrow('closed');
  });

  it('refuses to start, within seconds, when Redis cannot be reached', async () => {
    const { logger } = memoryLogger();
    const started = Date.now();
    await expect(createRedisRuntime({ redisUrl: 'redis://127.0.0.1:1', role: 'worker' }, logger)).rejects.toThrow('cannot reach Redis');
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
