import { Redis, type RedisOptions } from 'ioredis';
import type { ReadinessCheck } from '../utils/readiness.js';
import { toError } from '../utils/errors.js';
import type { Logger } from '../utils/logger.js';
import { ConfigError, type Config } from './env.js';

/**
 * ioredis connections for distributed mode, all made here so every one has the same reconnect
 * behaviour and a name that shows up in `CLIENT LIST`.
 */

/**
 * Every key and channel Jobline writes starts with this. It is added by hand, never through
 * ioredis' `keyPrefix` option: BullMQ refuses connections that set it (it takes its own `prefix`).
 */
export const redisKeyPrefix = 'jobline:';

/**
 * - `commands`: request-time work (rate limits, counters, publishing, subscribing). A command
 *   gives up after one failed reconnect or 5 s, so an API request answers (503) while Redis is
 *   down instead of hanging.
 * - `bullmq`: connections handed to BullMQ. Its workers block on Redis and must wait out an outage
 *   rather than fail, so BullMQ requires `maxRetriesPerRequest: null` (and warns otherwise).
 */
export type RedisPurpose = 'commands' | 'bullmq';

export interface RedisConnectionOptions {
  purpose: RedisPurpose;
  /** What the connection is for, e.g. `bus-publisher`; part of the name Redis shows for it. */
  name: string;
  logger: Logger;
  /**
   * Fail a command at once while disconnected instead of holding it until a reconnect (or the
   * deadline): for work done while answering a request (rate limits, login counters).
   */
  failFast?: boolean;
}

const COMMAND_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 5000;
const MAX_RECONNECT_DELAY_MS = 2000;
export const REDIS_PING_TIMEOUT_MS = 2000;

/** The ioredis options for a purpose (exported so BullMQ's own connections can be built from the same rules). */
export function redisOptions(config: Pick<Config, 'role'>, options: Pick<RedisConnectionOptions, 'purpose' | 'name' | 'failFast'>): RedisOptions {
  const bounded = options.purpose === 'commands';
  return {
    ...(options.failFast ? { enableOfflineQueue: false } : {}),
    // Connect now: a bad URL or a missing server shows up at start, not on the first request.
    lazyConnect: false,
    // Wait for a server that is still loading its data set before sending commands.
    enableReadyCheck: true,
    connectionName: `jobline:${config.role}:${options.name}:${process.pid}`,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // Reconnect forever, never more than 2 s apart, so readiness and workers recover soon after Redis returns.
    retryStrategy: (attempt) => Math.min(attempt * 200, MAX_RECONNECT_DELAY_MS),
    maxRetriesPerRequest: bounded ? 1 : null,
    // A blocking BullMQ command may rightly wait for a long time; only request-time commands get a deadline.
    ...(bounded ? { commandTimeout: COMMAND_TIMEOUT_MS } : {}),
  };
}

/**
 * Opens a connection to `config.redisUrl`. Connection errors are logged (the first of an outage
 * at warn, repeats at debug) instead of reaching ioredis' "unhandled error event" fallback.
 */
export function createRedisConnection(config: Pick<Config, 'redisUrl' | 'role'>, options: RedisConnectionOptions): Redis {
  if (config.redisUrl === null) throw new ConfigError(['JOBLINE_REDIS_URL: required in distributed mode']);
  const client = new Redis(config.redisUrl, redisOptions(config, options));
  const log = options.logger.child({ redis: options.name });
  let healthy = true;
  client.on('error', (error: Error) => {
    if (healthy) log.warn({ err: error }, 'Redis connection error; reconnecting');
    else log.debug({ err: error }, 'Redis still unreachable');
    healthy = false;
  });
  client.on('ready', () => {
    if (!healthy) log.info('Redis connection restored');
    healthy = true;
  });
  return client;
}

/** Resolves when Redis answers PING within `timeoutMs`; throws a message fit for the readiness report otherwise. */
export async function pingRedis(client: Redis, timeoutMs = REDIS_PING_TIMEOUT_MS): Promise<void> {
  // Fail at once when the connection is known to be down rather than wait for the timeout.
  if (client.status === 'end' || client.status === 'close') throw new Error('Redis connection is closed');
  if (client.status === 'reconnecting') throw new Error('Redis is unreachable (reconnecting)');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer PING within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const answer = await Promise.race([client.ping(), timeout]);
    if (answer !== 'PONG') throw new Error(`Redis answered PING with ${String(answer)}`);
  } finally {
    clearTimeout(timer);
  }
}

/** The `redis` entry of GET /health/ready. */
export function redisReadinessCheck(client: Redis): ReadinessCheck {
  return { name: 'redis', check: () => pingRedis(client) };
}

/**
 * Start-up check of the server's settings. BullMQ keeps queues in ordinary keys: a server that
 * evicts keys under memory pressure silently drops jobs, so any policy but `noeviction` is
 * warned about. Returns the policy, or null when it could not be read (managed services often
 * disable CONFIG, which is not worth more than a debug line).
 */
export async function checkRedisSettings(client: Redis, logger: Logger): Promise<string | null> {
  let reply: unknown;
  try {
    reply = await client.config('GET', 'maxmemory-policy');
  } catch (error) {
    const cause = toError(error);
    // A reply error means the server answered but refuses CONFIG; anything else is a connection problem.
    if (cause.name === 'ReplyError') logger.debug({ err: cause }, 'cannot read Redis maxmemory-policy (CONFIG is disabled); not checked');
    else logger.warn({ err: cause }, 'cannot read Redis maxmemory-policy; not checked');
    return null;
  }
  const policy = configValue(reply, 'maxmemory-policy');
  if (policy === null) {
    logger.debug({ reply }, 'Redis returned no maxmemory-policy; not checked');
    return null;
  }
  if (policy !== 'noeviction') {
    logger.warn(
      { maxmemoryPolicy: policy },
      `Redis maxmemory-policy is ${policy}: under memory pressure Redis may evict queued jobs; set maxmemory-policy noeviction`,
    );
  }
  return policy;
}

/** CONFIG GET answers `[name, value]` (RESP2 shape) or `{ name: value }` (RESP3 maps). */
function configValue(reply: unknown, name: string): string | null {
  if (Array.isArray(reply)) {
    const index = reply.indexOf(name);
    const value: unknown = index >= 0 ? reply[index + 1] : undefined;
    return typeof value === 'string' ? value : null;
  }
  if (typeof reply === 'object' && reply !== null) {
    const value: unknown = (reply as Record<string, unknown>)[name];
    return typeof value === 'string' ? value : null;
  }
  return null;
}

const CLOSE_TIMEOUT_MS = 2000;

/**
 * Closes gracefully (replies to earlier commands first) and resolves once the socket is closed,
 * or after 2 s with the socket dropped when Redis cannot answer QUIT.
 */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  // Between reconnect attempts there is no socket to close (nor an 'end' event to wait for):
  // disconnect() only stops the reconnect loop.
  if (client.status === 'reconnecting' || client.status === 'wait') {
    client.disconnect();
    return;
  }
  const ended = new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      client.disconnect();
      resolve();
    }, CLOSE_TIMEOUT_MS);
    client.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  if (client.status === 'ready') client.quit().catch(() => client.disconnect());
  else client.disconnect();
  await ended;
}

/**
 * @fastify/rate-limit options that keep the request budget in Redis, shared by every API process.
 * While Redis is down requests go through unlimited rather than all failing on the limiter: what
 * needs Redis answers 503 itself, and reads from PostgreSQL keep working.
 */
export function rateLimitStore(client: Redis, prefix: string = redisKeyPrefix): { redis: Redis; nameSpace: string; skipOnError: boolean } {
  return { redis: client, nameSpace: `${prefix}ratelimit:`, skipOnError: true };
}
