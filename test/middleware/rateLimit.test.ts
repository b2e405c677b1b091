import Fastify, { type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { closeRedis, createRedisConnection, rateLimitStore } from '../../src/config/redis.js';
import { registerErrorHandling } from '../../src/middleware/error.js';
import { registerRateLimit, type RateLimitOptions } from '../../src/middleware/rateLimit.js';
import {
  countKeys,
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

describe('the global rate limit across API processes', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** One API process: the limiter, the project's error rendering, a route and a health route. */
  async function apiProcess(perMinute: number, options: RateLimitOptions = {}): Promise<FastifyInstance> {
    const app = Fastify();
    registerErrorHandling(app, { bodyLimit: 1_048_576 });
    await registerRateLimit(app, perMinute, options);
    app.get('/v1/thing', async () => ({ ok: true }));
    app.get('/health/live', { config: { rateLimit: false } }, async () => ({ status: 'ok' }));
    await app.ready();
    cleanups.push(() => app.close());
    return app;
  }

  function connect(url = REDIS_TEST_URL): Redis {
    const client = createRedisConnection({ redisUrl: url, role: 'api' }, { purpose: 'commands', name: 'rate-limit', logger: memoryLogger().logger });
    cleanups.push(() => closeRedis(client));
    return client;
  }

  const get = (app: FastifyInstance, remoteAddress = '203.0.113.5', url = '/v1/thing') => app.inject({ method: 'GET', url, remoteAddress });

  it('keeps a budget per process in memory when no Redis is given', async () => {
    const [first, second] = [await apiProcess(2), await apiProcess(2)];
    for (const app of [first, first, second, second]) expect((await get(app)).statusCode).toBe(200);
    expect((await get(first)).statusCode).toBe(429);
    expect((await get(second)).statusCode).toBe(429);
  });

  it.skipIf(!reachable)('shares one budget per client between processes on Redis', async () => {
    const prefix = testPrefix();
    cleanups.push(() => deleteKeys(prefix));
    const [first, second] = [await apiProcess(3, { store: rateLimitStore(connect(), prefix) }), await apiProcess(3, { store: rateLimitStore(connect(), prefix) })];
    for (const app of [first, second, first]) expect((await get(app)).statusCode).toBe(200);
    const limited = await get(second);
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['content-type']).toContain('application/problem+json');
    expect(limited.json<{ code: string }>().code).toBe('JOBLINE_RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect((await get(first)).statusCode).toBe(429);
    // Another client has its own budget, and health checks are never limited.
    expect((await get(second, '198.51.100.7')).statusCode).toBe(200);
    expect((await get(first, '203.0.113.5', '/health/live')).statusCode).toBe(200);
    // One counter per client, under the deployment's prefix.
    expect(await countKeys(`${prefix}ratelimit:`)).toBe(2);
  });

  it.skipIf(!canStartRedis)('lets requests through, promptly, while Redis is down', async () => {
    const server = await startPrivateRedis();
    cleanups.push(() => server.stop());
    const client = connect(server.url);
    const app = await apiProcess(100, { store: rateLimitStore(client, testPrefix()) });
    expect((await get(app)).statusCode).toBe(200);
    await server.stop();
    await waitUntil(() => client.status === 'reconnecting', 'the client to notice the server is gone');
    const started = Date.now();
    expect((await get(app)).statusCode).toBe(200);
    expect(Date.now() - started).toBeLessThan(6000);
  });
});
