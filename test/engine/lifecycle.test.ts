import { describe, expect, it } from 'vitest';
import { NonRetriableError, RetryAfterError, isNonRetriable, retryAfterMsOf } from '../../src/engine/errors.js';
import { backoffDelay, decideAfterCrash, decideAfterFailure, nextState, TRANSITIONS } from '../../src/engine/lifecycle.js';
import { JOB_STATES } from '../../src/engine/types.js';

const ordinary = { error: { message: 'boom' }, nonRetriable: false, retryAfterMs: null };

describe('the state machine', () => {
  it('allows the documented transitions', () => {
    expect(nextState('queued', 'claim')).toBe('active');
    expect(nextState('scheduled', 'due')).toBe('queued');
    expect(nextState('active', 'complete')).toBe('completed');
    expect(nextState('active', 'retry_later')).toBe('scheduled');
    expect(nextState('active', 'fail')).toBe('failed');
    expect(nextState('active', 'cancel')).toBe('cancelled');
    expect(nextState('queued', 'cancel')).toBe('cancelled');
    expect(nextState('scheduled', 'cancel')).toBe('cancelled');
    expect(nextState('failed', 'manual_retry')).toBe('queued');
    expect(nextState('cancelled', 'manual_retry')).toBe('queued');
  });

  it('refuses everything else, and a completed job never changes', () => {
    expect(nextState('completed', 'manual_retry')).toBeNull();
    expect(nextState('completed', 'cancel')).toBeNull();
    expect(nextState('failed', 'cancel')).toBeNull();
    expect(nextState('queued', 'complete')).toBeNull();
    expect(Object.keys(TRANSITIONS.completed)).toEqual([]);
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...JOB_STATES].sort());
  });
});

describe('backoff', () => {
  it('is constant when fixed, and doubles when exponential, up to maxDelay', () => {
    const fixed = { type: 'fixed' as const, delay: 500 };
    expect([1, 2, 3].map((attempt) => backoffDelay(fixed, attempt))).toEqual([500, 500, 500]);
    const exponential = { type: 'exponential' as const, delay: 100, maxDelay: 1000 };
    expect([1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(exponential, attempt))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('spreads by at most the jitter fraction either way', () => {
    const policy = { type: 'fixed' as const, delay: 1000, jitter: 0.2 };
    expect(backoffDelay(policy, 1, 0)).toBe(800);
    expect(backoffDelay(policy, 1, 0.5)).toBe(1000);
    expect(backoffDelay(policy, 1, 0.999999)).toBe(1200);
    for (let i = 0; i < 100; i += 1) {
      const delay = backoffDelay(policy, 1);
      expect(delay).toBeGreaterThanOrEqual(800);
      expect(delay).toBeLessThanOrEqual(1200);
    }
  });
});

describe('retry decisions', () => {
  const base = { maxAttempts: 3, backoff: { type: 'fixed' as const, delay: 1000 }, now: 10_000, random: 0.5 };

  it('retries after the backoff while attempts remain, then fails', () => {
    expect(decideAfterFailure({ ...base, failure: ordinary, attemptsMade: 1 })).toEqual({ kind: 'retry', runAt: 11_000 });
    expect(decideAfterFailure({ ...base, failure: ordinary, attemptsMade: 2 })).toEqual({ kind: 'retry', runAt: 11_000 });
    expect(decideAfterFailure({ ...base, failure: ordinary, attemptsMade: 3 })).toEqual({ kind: 'fail' });
  });

  it('fails a non-retriable failure at once, and honours a requested retry time', () => {
    expect(decideAfterFailure({ ...base, failure: { ...ordinary, nonRetriable: true }, attemptsMade: 1 })).toEqual({ kind: 'fail' });
    expect(decideAfterFailure({ ...base, failure: { ...ordinary, retryAfterMs: 60_000 }, attemptsMade: 1 })).toEqual({ kind: 'retry', runAt: 70_000 });
    expect(decideAfterFailure({ ...base, failure: { ...ordinary, retryAfterMs: 60_000 }, attemptsMade: 3 })).toEqual({ kind: 'fail' });
  });

  it('fails a job after too many crashes', () => {
    expect(decideAfterCrash(1, 3)).toBe('requeue');
    expect(decideAfterCrash(2, 3)).toBe('requeue');
    expect(decideAfterCrash(3, 3)).toBe('fail');
  });
});

describe('handler errors', () => {
  it('are recognised by class and by name', () => {
    expect(isNonRetriable(new NonRetriableError('x'))).toBe(true);
    expect(isNonRetriable(Object.assign(new Error('x'), { name: 'NonRetriableError' }))).toBe(true);
    expect(isNonRetriable(new Error('x'))).toBe(false);
    expect(retryAfterMsOf(new RetryAfterError('x', 1500))).toBe(1500);
    expect(retryAfterMsOf(Object.assign(new Error('x'), { name: 'RetryAfterError', retryAfterMs: 20 }))).toBe(20);
    expect(retryAfterMsOf(Object.assign(new Error('x'), { name: 'RetryAfterError', retryAfterMs: -1 }))).toBeNull();
    expect(retryAfterMsOf(new Error('x'))).toBeNull();
  });
});
