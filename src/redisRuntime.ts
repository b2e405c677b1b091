import type { Redis } from 'ioredis';
import { RedisEventBus } from './events/redisBus.js';
import type { ReadinessCheck } from './utils/readiness.js';
import { RedisCounterStore } from './utils/redisCounterStore.js';
import type { Logger } from './utils/logger.js';
import type { Config } from './config/env.js';
import { checkRedisSettings, closeRedis, createRedisConnection, redisKeyPrefix, redisReadinessCheck } from './config/redis.js';

/**
 * What a distributed-mode process shares through Redis, apart from BullMQ's own connections:
 * the event bus, the counters behind login throttling, the connection the HTTP rate limit uses,
 * and the readiness check. Bootstrap opens it once and closes it last.
 */
export interface RedisRuntime {
  /** A request-time connection that fails at once while Redis is away, shared by the counters, the HTTP rate limit and readiness. */
  readonly commands: Redis;
  readonly bus: RedisEventBus;
  readonly counters: RedisCounterStore;
  readonly readiness: ReadinessCheck;
  /** Closes the bus (its two connections) and the command connection. Idempotent. */
  close(): Promise<void>;
}

/** A fail-fast connection refuses commands until it is ready: wait for that (or its first error). */
function untilReady(client: Redis): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = () => {
      client.off('error', onError);
      resolve();
    };
    const onError = (error: Error) => {
      client.off('ready', onReady);
      reject(error);
    };
    client.once('ready', onReady);
    client.once('error', onError);
  });
}

/**
 * Connects, warns about unsafe server settings, and subscribes to the bus. Rejects when Redis
 * cannot be reached at start, so a misconfigured process stops instead of serving half a cluster.
 */
export async function createRedisRuntime(config: Pick<Config, 'redisUrl' | 'role'>, logger: Logger, prefix = redisKeyPrefix): Promise<RedisRuntime> {
  const commands = createRedisConnection(config, { purpose: 'commands', name: 'commands', logger, failFast: true });
  let bus: RedisEventBus | null = null;
  try {
    bus = await RedisEventBus.connect({
      publisher: createRedisConnection(config, { purpose: 'commands', name: 'bus-publisher', logger }),
      subscriber: createRedisConnection(config, { purpose: 'commands', name: 'bus-subscriber', logger }),
      prefix,
      logger,
    });
    // After the bus: an unreachable Redis fails start-up there rather than as a "not checked" warning.
    await untilReady(commands);
    await checkRedisSettings(commands, logger);
  } catch (error) {
    await bus?.close();
    await closeRedis(commands);
    throw new Error('cannot reach Redis at JOBLINE_REDIS_URL', { cause: error });
  }
  const openBus = bus;
  let closing: Promise<void> | null = null;
  return {
    commands,
    bus: openBus,
    counters: new RedisCounterStore(commands, { prefix }),
    readiness: redisReadinessCheck(commands),
    close: () => {
      closing ??= Promise.all([openBus.close(), closeRedis(commands)]).then(() => undefined);
      return closing;
    },
  };
}
