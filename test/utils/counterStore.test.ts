import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { closeRedis, createRedisConnection } from '../../src/config/redis.js';
import { LOGIN_POLICY, LoginThrottle } from '../../src/services/loginThrottle.js';
import { systemClock } from '../../src/utils/clock.js';
import { MemoryCounterStore, type CounterStore } from '../../src/utils/counterStore.js';
import { AppError } from '../../src/utils/errors.js';
import { RedisCounterStore } from '../../src/utils/redisCounterStore.js';
import {
  countKeys,
  deleteKeys,
  memoryLogger,
  REDIS_TEST_URL,
  redisReachable,
  redisServerAvailable,
  startPrivateRedis,
  testPrefix,
  testRedisClient,
} from '../helpers/redis.js';

const reachable = await redisReachable();
const canStartRedis = await redisServerAvailable();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Redis connections opened by this file, closed at the end. */
const connections: ReturnType<typeof createRedisConnection>[] = [];
afterAll(async () => {
  await Promise.all(connections.map((client) => closeRedis(client)));
});

function redisStore(prefix: string, redisUrl = REDIS_TEST_URL): RedisCounterStore {
  // A connection per store, as each process has its own.
  const client = createRedisConnection({ redisUrl, role: 'api' }, { purpose: 'commands', name: 'counters', logger: memoryLogger().logger });
  connections.push(client);
  return new RedisCounterStore(client, { prefix });
}

const kinds = reachable ? (['memory', 'redis'] as const) : (['memory'] as const);

describe.each(kinds)('the %s counter store', (kind) => {
  const prefixes: string[] = [];
  afterEach(async () => {
    for (const prefix of prefixes.splice(0)) await deleteKeys(prefix);
  });

  function openStore(): CounterStore {
    if (kind === 'memory') return new MemoryCounterStore();
    const prefix = testPrefix();
    prefixes.push(prefix);
    return redisStore(prefix);
  }

  it('counts hits within a window and says when the window ends', async () => {
    const store = openStore();
    const before = Date.now();
    const first = await store.hit('k', 60_000);
    const afterFirst = Date.now();
    // Later hits come a second after the first: a window each one reopened would end a second later.
    await sleep(1000);
    const second = await store.hit('k', 60_000);
    const third = await store.hit('k', 60_000);
    expect([first.count, second.count, third.count]).toEqual([1, 2, 3]);
    expect(first.resetAt).toBeGreaterThan(before + 59_000);
    expect(first.resetAt).toBeLessThanOrEqual(afterFirst + 60_000);
    // Later hits keep the window the first one opened. (The Redis store reads the remaining time
    // there and adds it to its own clock when the reply is handled, which a loaded machine delays:
    // hence a tolerance, well under the second that tells the two cases apart.)
    expect(Math.abs(third.resetAt - first.resetAt)).toBeLessThan(500);
    const peeked = await store.peek('k');
    expect(peeked.count).toBe(3);
    expect(Math.abs(peeked.resetAt - first.resetAt)).toBeLessThan(500);
  });

  it('peeks without counting, and reports nothing for an unknown key', async () => {
    const store = openStore();
    const before = Date.now();
    const unknown = await store.peek('never-hit');
    expect(unknown.count).toBe(0);
    expect(unknown.resetAt).toBeGreaterThanOrEqual(before);
    await store.hit('k', 60_000);
    await store.peek('k');
    await store.peek('k');
    expect((await store.peek('k')).count).toBe(1);
  });

  it('starts a fresh window once the old one has ended', async () => {
    const store = openStore();
    // A window of a second: long enough that a loaded machine still peeks inside it.
    await store.hit('k', 1000);
    await store.hit('k', 1000);
    expect((await store.peek('k')).count).toBe(2);
    await sleep(1100);
    expect((await store.peek('k')).count).toBe(0);
    const freshAt = Date.now();
    const fresh = await store.hit('k', 1000);
    expect(fresh.count).toBe(1);
    // A whole new window from this hit, not what was left of the old one.
    expect(fresh.resetAt).toBeGreaterThanOrEqual(freshAt + 1000);
  });

  it('forgets a key on reset', async () => {
    const store = openStore();
    await store.hit('k', 60_000);
    await store.hit('k', 60_000);
    await store.reset('k');
    expect((await store.peek('k')).count).toBe(0);
    expect((await store.hit('k', 60_000)).count).toBe(1);
    await store.reset('not-there');
  });

  it('keeps keys apart', async () => {
    const store = openStore();
    await store.hit('login:ip:10.0.0.1', 60_000);
    await store.hit('login:ip:10.0.0.1', 60_000);
    await store.hit('login:ip:10.0.0.2', 1_000);
    await store.reset('login:ip:10.0.0.2');
    expect((await store.peek('login:ip:10.0.0.1')).count).toBe(2);
    expect((await store.peek('login:ip:10.0.0.2')).count).toBe(0);
    expect((await store.hit('login:ip:10.0.0.3', 60_000)).count).toBe(1);
  });
});

describe.skipIf(!reachable)('Redis counter stores in several processes', () => {
  const prefixes: string[] = [];
  afterEach(async () => {
    for (const prefix of prefixes.splice(0)) await deleteKeys(prefix);
  });

  function sharedPrefix(): string {
    const prefix = testPrefix();
    prefixes.push(prefix);
    return prefix;
  }

  it('share one count per key, and keep their keys under the prefix', async () => {
    const prefix = sharedPrefix();
    const [first, second] = [redisStore(prefix), redisStore(prefix)];
    await Promise.all([first.hit('k', 60_000), second.hit('k', 60_000), first.hit('k', 60_000), second.hit('k', 60_000)]);
    expect((await first.peek('k')).count).toBe(4);
    expect((await second.hit('k', 60_000)).count).toBe(5);
    await first.reset('k');
    expect((await second.peek('k')).count).toBe(0);
    await second.hit('other', 60_000);
    expect(await countKeys(`${prefix}counter:`)).toBe(1);
    // Another prefix (another deployment on the same Redis) counts on its own.
    expect((await redisStore(sharedPrefix()).peek('other')).count).toBe(0);
  });

  it('hold one login limit however the failures are spread over processes', async () => {
    const prefix = sharedPrefix();
    const throttles = [new LoginThrottle(redisStore(prefix), systemClock), new LoginThrottle(redisStore(prefix), systemClock)];
    for (let failure = 0; failure < LOGIN_POLICY.maxFailuresPerAccountAndIp; failure += 1) {
      const throttle = throttles[failure % 2]!;
      await throttle.assertAllowed('ada@example.com', '203.0.113.9');
      await throttle.recordFailure('ada@example.com', '203.0.113.9');
    }
    for (const throttle of throttles) {
      const refused = await throttle.assertAllowed('ada@example.com', '203.0.113.9').catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(AppError);
      expect((refused as AppError).status).toBe(429);
      expect(Number((refused as AppError).headers?.['retry-after'])).toBeGreaterThan(14 * 60);
    }
    // The same account from another address is not locked out.
    await throttles[0]!.assertAllowed('ada@example.com', '198.51.100.4');
  });
});

describe.skipIf(!canStartRedis)('the Redis counter store on a server that loses its scripts', () => {
  it('loads its script again after a restart or SCRIPT FLUSH', async () => {
    const server = await startPrivateRedis();
    try {
      const store = redisStore(testPrefix(), server.url);
      expect((await store.hit('k', 60_000)).count).toBe(1);
      const admin = testRedisClient(server.url);
      await admin.connect();
      await admin.script('FLUSH');
      admin.disconnect();
      expect((await store.hit('k', 60_000)).count).toBe(2);
    } finally {
      await server.stop();
    }
  });
});
