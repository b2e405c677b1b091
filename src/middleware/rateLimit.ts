import rateLimit, { type RateLimitPluginOptions } from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import { errors } from '../utils/errors.js';

/**
 * Where the counts live, as plugin options built by the config layer (config/redis.ts
 * `rateLimitStore`): in Redis, every API process shares one budget per client. In memory, per
 * process, when absent. The HTTP layer never sees the Redis client's type.
 */
export type RateLimitStore = Pick<RateLimitPluginOptions, 'redis' | 'nameSpace' | 'skipOnError'>;

export interface RateLimitOptions {
  store?: RateLimitStore | null;
}

/**
 * A per-client request budget for the whole API (requests per minute per address). Health and
 * metrics routes opt out with `config: { rateLimit: false }`. Login has its own, stricter
 * throttle (services/loginThrottle.ts).
 */
export async function registerRateLimit(app: FastifyInstance, perMinute: number, options: RateLimitOptions = {}): Promise<void> {
  if (perMinute === 0) return;
  await app.register(rateLimit, {
    global: true,
    max: perMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => request.ip,
    errorResponseBuilder: (_request, context) => errors.rateLimited(Math.max(1, Math.ceil(context.ttl / 1000))),
    ...options.store,
  });
}
