import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/env.js';
import {
  checkRedisSettings,
  closeRedis,
  createRedisConnection,
  pingRedis,
  redisKeyPrefix,
  redisOptions,
  redisReadinessCheck,
} from '../../src/config/redis.js';
import {
  deleteKeys,
  memoryLogger,
  REDIS_TEST_URL,
  redisReachable,
  redisServerAvailable,
  startPrivateRedis,
  testPrefix,
  waitUntil,
} from '../helpers/redis.js';

const reachable = await redisReachable();
const canStartRedis = await redisServerAvailable();
const shared = { redisUrl: REDIS_TEST_URL, role: 'worker' as const };

describe('Redis connection options', () => {
  it('bounds request-time commands, and leaves BullMQ connections to wait out an outage', () => {
    const commands = redisOptions({ role: 'api' }, { purpose: 'commands', name: 'limits' });
    expect(commands).toMatchObject({ lazyConnect: false, enableReadyCheck: true, maxRetriesPerRequest: 1, commandTimeout: 5000 });
    expect(commands.connectionName).toBe(`jobline:api:limits:${process.pid}`);
    const bullmq = redisOptions({ role: 'worker' }, { purpose: 'bullmq', name: 'queue' });
    expect(bullmq.maxRetriesPerRequest).toBeNull();
    expect(bullmq.commandTimeout).toBeUndefined();
    // Reconnects never stop and never wait more than 2 s, so a returning Redis is picked up soon.
    expect([1, 5, 100, 10_000].map((attempt) => commands.retryStrategy?.(attempt))).toEqual([200, 1000, 2000, 2000]);
    expect(redisKeyPrefix).toBe('jobline:');
  });

  it('refuses to connect without JOBLINE_REDIS_URL', () => {
    const { logger } = memoryLogger();
    expect(() => createRedisConnection({ redisUrl: null, role: 'all' }, { purpose: 'commands', name: 'x', logger })).toThrow(ConfigError);
  });
});

describe.skipIf(!reachable)('Redis connections on the shared server', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function connect(purpose: 'commands' | 'bullmq', name: string): Redis {
    const client = createRedisConnection(shared, { purpose, name, logger: memoryLogger().logger });
    cleanups.push(() => closeRedis(client));
    return client;
  }

  it('names each connection, answers the readiness check, and closes', async () => {
    const client = connect('commands', 'readiness');
    const check = redisReadinessCheck(client);
    expect(check.name).toBe('redis');
    await check.check();
    expect(await client.client('GETNAME')).toBe(`jobline:worker:readiness:${process.pid}`);
    await closeRedis(client);
    expect(client.status).toBe('end');
    await expect(pingRedis(client)).rejects.toThrow('closed');
  });

  it('gives BullMQ connections it accepts for a worker, and runs a job through them', async () => {
    const prefix = testPrefix();
    cleanups.push(() => deleteKeys(prefix));
    // BullMQ adds its own ':' after the prefix.
    const bullPrefix = prefix.slice(0, -1);
    const queue = new Queue('smoke', { connection: connect('bullmq', 'queue'), prefix: bullPrefix });
    cleanups.push(() => queue.close());
    // A bounded connection is refused for a worker: its blocking commands must not give up.
    expect(() => new Worker('smoke', async () => 'x', { connection: connect('commands', 'refused'), prefix: bullPrefix, autorun: false })).toThrow(
      /maxRetriesPerRequest/,
    );
    const worker = new Worker('smoke', async (job) => (job.data as { n: number }).n * 2, {
      connection: connect('bullmq', 'worker'),
      prefix: bullPrefix,
    });
    cleanups.push(() => worker.close());
    const done = new Promise<unknown>((resolve) => worker.on('completed', (_job, result) => resolve(result)));
    await queue.add('double', { n: 21 });
    expect(await done).toBe(42);
  });
});

describe.skipIf(!canStartRedis)('Redis connections on a server the test starts and stops', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function privateRedis(args: string[] = []) {
    const server = await startPrivateRedis(args);
    cleanups.push(() => server.stop());
    return server;
  }

  function connect(url: string, logger = memoryLogger().logger): Redis {
    const client = createRedisConnection({ redisUrl: url, role: 'all' }, { purpose: 'commands', name: 'private', logger });
    cleanups.push(() => closeRedis(client));
    return client;
  }

  it('says nothing at start when maxmemory-policy is noeviction', async () => {
    const server = await privateRedis();
    const { logger, lines } = memoryLogger();
    expect(await checkRedisSettings(connect(server.url), logger)).toBe('noeviction');
    expect(lines.filter((line) => Number(line['level']) >= 40)).toEqual([]);
  });

  it('warns at start when Redis may evict keys (and so jobs)', async () => {
    const server = await privateRedis(['--maxmemory-policy', 'allkeys-lru']);
    const { logger, lines } = memoryLogger();
    expect(await checkRedisSettings(connect(server.url), logger)).toBe('allkeys-lru');
    const warning = lines.find((line) => line['level'] === 40);
    expect(warning?.['maxmemoryPolicy']).toBe('allkeys-lru');
    expect(String(warning?.['msg'])).toContain('noeviction');
  });

  it('logs at debug and moves on when the server disables CONFIG', async () => {
    const server = await privateRedis(['--rename-command', 'CONFIG', '']);
    const { logger, lines } = memoryLogger();
    expect(await checkRedisSettings(connect(server.url), logger)).toBeNull();
    expect(lines.filter((line) => Number(line['level']) >= 40)).toEqual([]);
    expect(lines.some((line) => line['level'] === 20 && String(line['msg']).includes('CONFIG is disabled'))).toBe(true);
  });

  it('fails readiness and commands promptly while Redis is down, and recovers by itself when it returns', async () => {
    const server = await privateRedis();
    const { logger, lines } = memoryLogger();
    const client = connect(server.url, logger);
    await pingRedis(client);

    await server.stop();
    await waitUntil(() => client.status === 'reconnecting', 'the client to notice the server is gone');
    const started = Date.now();
    await expect(pingRedis(client)).rejects.toThrow('unreachable');
    await expect(client.get('anything')).rejects.toThrow();
    // A request that needs Redis gets an answer (an error) within seconds, not never.
    expect(Date.now() - started).toBeLessThan(6000);
    expect(lines.filter((line) => line['msg'] === 'Redis connection error; reconnecting')).toHaveLength(1);

    const restarted = await startPrivateRedis([], { port: server.port });
    cleanups.push(() => restarted.stop());
    // Reconnect attempts are at most 2 s apart.
    await waitUntil(() => client.status === 'ready', 'the client to reconnect', 15_000);
    await pingRedis(client);
    expect(lines.some((line) => line['msg'] === 'Redis connection restored')).toBe(true);
  });
});
