import type { AttemptFailure, BackoffPolicy, JobError, JobState, RetentionPolicy } from './types.js';

/**
 * The pure rules of a job's life, shared by every engine: which transitions exist, how long
 * to back off, whether a failed attempt is retried. No I/O.
 */

export type Action =
  | 'delay'
  | 'due'
  | 'claim'
  | 'complete'
  | 'retry_later'
  | 'fail'
  | 'cancel'
  | 'manual_retry'
  | 'lease_lost'
  | 'release'
  | 'expire';

/** The state machine: from → action → to. Anything not listed is refused. */
export const TRANSITIONS: Readonly<Record<JobState, Partial<Record<Action, JobState>>>> = {
  queued: { claim: 'active', cancel: 'cancelled', expire: 'failed', delay: 'scheduled' },
  scheduled: { due: 'queued', cancel: 'cancelled', expire: 'failed' },
  active: {
    complete: 'completed',
    retry_later: 'scheduled',
    fail: 'failed',
    cancel: 'cancelled',
    lease_lost: 'queued',
    release: 'queued',
  },
  completed: {},
  failed: { manual_retry: 'queued' },
  cancelled: { manual_retry: 'queued' },
};

export function nextState(from: JobState, action: Action): JobState | null {
  return TRANSITIONS[from][action] ?? null;
}

export const PRIORITY_MIN = -1000;
export const PRIORITY_MAX = 1000;
export const DEFAULT_MAX_ATTEMPTS = 3;
export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ type: 'exponential', delay: 1000, maxDelay: 3_600_000, jitter: 0.2 });
/** A job whose worker died this many times (leases expired) fails instead of being run again. */
export const DEFAULT_MAX_CRASHES = 3;

export const ERROR_CODES = Object.freeze({
  timeout: 'JOBLINE_JOB_TIMEOUT',
  expired: 'JOBLINE_JOB_EXPIRED',
  crashed: 'JOBLINE_JOB_CRASHED',
  leaseExpired: 'JOBLINE_LEASE_EXPIRED',
  handlerMissing: 'JOBLINE_HANDLER_MISSING',
});

/** Delay before retry number `attempt` (1 = after the first failure). `random` in [0, 1). */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: number = Math.random()): number {
  const base = policy.type === 'fixed' ? policy.delay : policy.delay * 2 ** Math.max(0, attempt - 1);
  const capped = Math.min(base, policy.maxDelay ?? Number.POSITIVE_INFINITY);
  const jitter = Math.min(1, Math.max(0, policy.jitter ?? 0));
  // Symmetric jitter: spreads retries of many jobs that failed together.
  const varied = capped * (1 - jitter + 2 * jitter * random);
  return Math.max(0, Math.round(varied));
}

export type FailureDecision = { kind: 'retry'; runAt: number } | { kind: 'fail' };

/** After attempt number `attemptsMade` failed: retry (when) or fail for good. */
export function decideAfterFailure(input: {
  failure: AttemptFailure;
  attemptsMade: number;
  maxAttempts: number;
  backoff: BackoffPolicy;
  now: number;
  random?: number;
}): FailureDecision {
  const { failure, attemptsMade, maxAttempts } = input;
  if (failure.nonRetriable || attemptsMade >= maxAttempts) return { kind: 'fail' };
  const delay = failure.retryAfterMs ?? backoffDelay(input.backoff, attemptsMade, input.random);
  return { kind: 'retry', runAt: input.now + delay };
}

/** After a worker died holding the job (its lease expired): run again, or fail after too many crashes. */
export function decideAfterCrash(crashes: number, maxCrashes: number = DEFAULT_MAX_CRASHES): 'requeue' | 'fail' {
  return crashes >= maxCrashes ? 'fail' : 'requeue';
}

export function crashError(crashes: number): JobError {
  return { message: `The worker running this job stopped ${crashes} times without finishing it.`, code: ERROR_CODES.crashed };
}

export function expiredError(): JobError {
  return { message: 'The job did not start before its ttl ran out.', code: ERROR_CODES.expired };
}

export function timeoutError(timeoutMs: number): JobError {
  return { message: `The attempt did not finish within its timeout of ${timeoutMs} ms.`, code: ERROR_CODES.timeout };
}

/** Each finished state with the finish time before which its jobs are purged (cancelled ones are kept as long as failed ones). */
export function retentionCutoffs(now: number, retention: RetentionPolicy): ['completed' | 'failed' | 'cancelled', number][] {
  return [
    ['completed', now - retention.completedMs],
    ['failed', now - retention.failedMs],
    ['cancelled', now - retention.failedMs],
  ];
}
