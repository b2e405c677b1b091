import type { Clock } from '../utils/clock.js';
import type { CounterStore } from '../utils/counterStore.js';
import { errors } from '../utils/errors.js';

/**
 * Limits failed logins without handing an attacker a way to lock a real user out:
 * - per account and address: a few failures, then that address waits out a short window;
 * - per address: many failures across accounts (credential stuffing), then it waits;
 * - per account from everywhere: a high ceiling against distributed guessing, which an address
 *   that has logged into the account before is exempt from, so its owner still gets in.
 */
export const LOGIN_POLICY = Object.freeze({
  windowMs: 15 * 60_000,
  maxFailuresPerAccountAndIp: 5,
  maxFailuresPerIp: 50,
  maxFailuresPerAccount: 100,
  trustedForMs: 30 * 86_400_000,
});

export class LoginThrottle {
  constructor(
    private readonly store: CounterStore,
    private readonly clock: Clock,
  ) {}

  /** Throws a 429 AppError (with Retry-After) when this login attempt must wait. */
  async assertAllowed(email: string, ip: string): Promise<void> {
    const [pair, address, account, trusted] = await Promise.all([
      this.store.peek(pairKey(email, ip)),
      this.store.peek(`login:ip:${ip}`),
      this.store.peek(`login:acct:${email}`),
      this.store.peek(trustKey(email, ip)),
    ]);
    const blocked = [
      pair.count >= LOGIN_POLICY.maxFailuresPerAccountAndIp ? pair.resetAt : 0,
      address.count >= LOGIN_POLICY.maxFailuresPerIp ? address.resetAt : 0,
      account.count >= LOGIN_POLICY.maxFailuresPerAccount && trusted.count === 0 ? account.resetAt : 0,
    ];
    const until = Math.max(...blocked);
    if (until > 0) {
      const retryAfter = Math.max(1, Math.ceil((until - this.clock.now()) / 1000));
      throw errors.rateLimited(retryAfter, `Too many failed logins; try again in ${retryAfter} s.`);
    }
  }

  async recordFailure(email: string, ip: string): Promise<void> {
    await Promise.all([
      this.store.hit(pairKey(email, ip), LOGIN_POLICY.windowMs),
      this.store.hit(`login:ip:${ip}`, LOGIN_POLICY.windowMs),
      this.store.hit(`login:acct:${email}`, LOGIN_POLICY.windowMs),
    ]);
  }

  async recordSuccess(email: string, ip: string): Promise<void> {
    await this.store.reset(pairKey(email, ip));
    await this.store.reset(trustKey(email, ip));
    await this.store.hit(trustKey(email, ip), LOGIN_POLICY.trustedForMs);
  }
}

function pairKey(email: string, ip: string): string {
  return `login:pair:${email}:${ip}`;
}

function trustKey(email: string, ip: string): string {
  return `login:trusted:${email}:${ip}`;
}
