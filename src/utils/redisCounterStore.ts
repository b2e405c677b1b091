import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { CounterStore } from './counterStore.js';

/**
 * Counts one hit in a fixed window.
 * KEYS[1]  the counter
 * ARGV[1]  the window length in ms
 * Returns  {count in the window, ms until the window ends}
 * The expiry is set by the hit that opens the window (and restored if a key ever lost it), in the
 * same script as the INCR so no crash in between can leave a counter that never resets.
 */
const HIT_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {count, ttl}
`;
const HIT_SHA = createHash('sha1').update(HIT_SCRIPT).digest('hex');

export interface RedisCounterStoreOptions {
  /** Counter keys are `<prefix>counter:<key>`; stores that share a prefix share counts. */
  prefix: string;
  now?: () => number;
}

/** The CounterStore shared by every process on one Redis: one limit however many processes count. */
export class RedisCounterStore implements CounterStore {
  private readonly prefix: string;
  private readonly now: () => number;

  constructor(
    private readonly client: Redis,
    options: RedisCounterStoreOptions,
  ) {
    this.prefix = `${options.prefix}counter:`;
    this.now = options.now ?? Date.now;
  }

  async hit(key: string, windowMs: number): Promise<{ count: number; resetAt: number }> {
    const reply = await this.runHitScript(this.prefix + key, Math.max(1, Math.ceil(windowMs)));
    const [count, ttl] = numberPair(reply);
    return { count, resetAt: this.now() + ttl };
  }

  async peek(key: string): Promise<{ count: number; resetAt: number }> {
    const fullKey = this.prefix + key;
    // One MULTI, so the count and its expiry come from the same moment.
    const replies = await this.client.multi().get(fullKey).pttl(fullKey).exec();
    const [countReply, ttlReply] = replies ?? [];
    if (countReply?.[0]) throw countReply[0];
    if (ttlReply?.[0]) throw ttlReply[0];
    const count = Number(countReply?.[1] ?? 0);
    const ttl = Number(ttlReply?.[1] ?? -2);
    // -2: no key (the window ended); a key without expiry cannot come from hit(), so count it as ended too.
    if (!Number.isFinite(count) || count <= 0 || ttl < 0) return { count: 0, resetAt: this.now() };
    return { count, resetAt: this.now() + ttl };
  }

  async reset(key: string): Promise<void> {
    await this.client.del(this.prefix + key);
  }

  /** EVALSHA saves sending the script each time; EVAL loads it after a restart or SCRIPT FLUSH. */
  private async runHitScript(fullKey: string, windowMs: number): Promise<unknown> {
    try {
      return await this.client.evalsha(HIT_SHA, 1, fullKey, windowMs);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return this.client.eval(HIT_SCRIPT, 1, fullKey, windowMs);
    }
  }
}

function numberPair(reply: unknown): [number, number] {
  if (Array.isArray(reply)) {
    const [first, second] = reply as unknown[];
    if (typeof first === 'number' && typeof second === 'number') return [first, second];
  }
  throw new Error(`unexpected reply from the counter script: ${JSON.stringify(reply)}`);
}
