import { crashError, decideAfterCrash, decideAfterFailure, expiredError } from './lifecycle.js';
import { rowToJob, type JobRow } from './rows.js';
import {
  finishEvent,
  leaseExpiredError,
  newJobRow,
  planHandlerEvents,
  releasedError,
  requireTransition,
  retryingData,
  TransitionError,
} from './transitions.js';
import type { AddedJob, AttemptFailure, BackoffPolicy, Claim, HandlerEvent, JobError, JobEvent, JobEventType, JobState, NewJob, Outcome } from './types.js';

/**
 * Every transition of a job, written once as a pure plan: given the row as stored (read in the
 * caller's transaction) and the request, a plan says how the row changes, which event rows go
 * with it (the outbox) and what to do once it commits. Each engine applies plans to its store
 * (SQLite statements, PostgreSQL through Kysely) and does the after-commit work its own way
 * (announce in process, put tickets on BullMQ). No I/O here.
 */

/** The columns of a job row a plan may set (never its id). */
export type JobUpdate = Partial<Omit<JobRow, 'id'>>;

/** One stored event row, ready to insert. */
export interface EventRow {
  job_id: string;
  seq: number;
  seq_end: number | null;
  type: JobEventType;
  at: number;
  /** JSON text. */
  data: string;
}

export interface Plan {
  /** The job's row once the plan is applied. */
  row: JobRow;
  /**
   * A new row (with its tags), or these columns of row `row.id`. `shape` names the column set
   * (each shape always sets the same columns), so a store can keep one statement per shape.
   */
  write: { kind: 'insert'; tags: string[] } | { kind: 'update'; set: JobUpdate; shape: string };
  /** Inserted in the same transaction as the row change. */
  eventRows: EventRow[];
  /** After commit: the events to announce, one per seq. */
  events: JobEvent[];
  /** After commit: the job became runnable, now (queued) or at `row.run_at` (scheduled). */
  dispatch: boolean;
  /** After commit: an active job was cancelled, so its handler must be told to stop. */
  stopsHandler: boolean;
}

/**
 * What a committed transaction leaves to do, gathered from its plans: events to announce, queues
 * with newly claimable jobs, handlers to stop, rows that became runnable (the embedded engine arms
 * its due timer from them, the BullMQ engine turns them into tickets).
 */
export class AfterCommit {
  readonly events: JobEvent[] = [];
  readonly available = new Set<string>();
  readonly stopHandlers: string[] = [];
  readonly runnable: JobRow[] = [];

  add(plan: Plan): void {
    this.events.push(...plan.events);
    if (plan.stopsHandler) this.stopHandlers.push(plan.row.id);
    if (!plan.dispatch) return;
    this.runnable.push(plan.row);
    if (plan.row.state === 'queued') this.available.add(plan.row.queue);
  }

  /** Takes over what a nested step (a savepoint that committed) left to do. */
  merge(other: AfterCommit): void {
    this.events.push(...other.events);
    this.stopHandlers.push(...other.stopHandlers);
    this.runnable.push(...other.runnable);
    for (const queue of other.available) this.available.add(queue);
  }
}

/**
 * Builds a plan that writes `set` (a fresh object of the caller's, completed here with last_seq)
 * on `row` and the events `events`, each one row, seq running on from the row's last.
 */
function change(
  row: JobRow,
  shape: string,
  set: JobUpdate,
  events: { type: JobEventType; data: Record<string, unknown> }[],
  now: number,
  flags: Partial<Pick<Plan, 'dispatch' | 'stopsHandler'>> = {},
): Plan {
  const eventRows: EventRow[] = [];
  const jobEvents: JobEvent[] = [];
  let seq = row.last_seq;
  for (const event of events) {
    seq += 1;
    eventRows.push(eventRow(row.id, seq, null, event.type, now, event.data));
    jobEvents.push(jobEvent(row, seq, event.type, now, event.data));
  }
  set.last_seq = seq;
  return {
    row: { ...row, ...set },
    write: { kind: 'update', set, shape },
    eventRows,
    events: jobEvents,
    dispatch: flags.dispatch ?? false,
    stopsHandler: flags.stopsHandler ?? false,
  };
}

function eventRow(jobId: string, seq: number, seqEnd: number | null, type: JobEventType, at: number, data: Record<string, unknown>): EventRow {
  return { job_id: jobId, seq, seq_end: seqEnd, type, at, data: JSON.stringify(data) };
}

function jobEvent(row: JobRow, seq: number, type: JobEventType, at: number, data: Record<string, unknown>): JobEvent {
  return { type, jobId: row.id, seq, at, data, queue: row.queue, ownerId: row.owner_id };
}

/**
 * Insert: a new job's row, its tags and its job.created event (seq 1).
 * Takes the id to give it, the validated submission and the time; returns the insert plan
 * (runnable at once when due, at run_at otherwise). Cannot fail.
 */
export function planInsert(id: string, job: NewJob, now: number): Plan {
  const row = { ...newJobRow(id, job, now), last_seq: 1 };
  return {
    row,
    write: { kind: 'insert', tags: [...new Set(job.tags)] },
    eventRows: [eventRow(id, 1, null, 'job.created', now, {})],
    events: [jobEvent(row, 1, 'job.created', now, {})],
    dispatch: true,
    stopsHandler: false,
  };
}

/**
 * Activate: a claim of a queued row under a new lease, with its job.active event.
 * Takes the row, the lease token the caller drew, the worker and lease length, the time. Returns
 * the plan with the claim, or, when the job's ttl ran out before it started, the plan that fails
 * it as expired and no claim. Fails with TransitionError when the row is not queued.
 */
export function planClaim(row: JobRow, lease: { token: string; workerId: string; leaseMs: number }, now: number): { plan: Plan; claim: Claim | null } {
  if (row.expires_at !== null && Number(row.expires_at) <= now) return { plan: planExpire(row, now), claim: null };
  requireTransition(row, 'claim');
  const attempt = row.attempts_made + 1;
  const leaseExpiresAt = now + lease.leaseMs;
  const set: JobUpdate = { state: 'active', attempts_made: attempt, started_at: now, lease_token: lease.token, lease_expires_at: leaseExpiresAt, worker_id: lease.workerId };
  const plan = change(row, 'activate', set, [{ type: 'job.active', data: { attempt, workerId: lease.workerId } }], now);
  return { plan, claim: { job: rowToJob(plan.row), token: lease.token, leaseExpiresAt, attempt } };
}

/**
 * Finish: to completed, failed or cancelled, with job.completed / job.failed / job.cancelled.
 * Takes the row, the action, the result or error, the time; returns the plan (which stops the
 * handler when an active job is cancelled). Fails with TransitionError when the row's state
 * does not allow the action (a finished job cannot be cancelled, say).
 */
export function planFinish(
  row: JobRow,
  action: 'complete' | 'fail' | 'cancel' | 'expire',
  outcome: { result?: unknown; error?: JobError },
  now: number,
  /** Further columns the finish sets: the crash count of a job failed by its last crash. */
  also: Pick<JobUpdate, 'crash_count'> = {},
): Plan {
  const state = requireTransition(row, action);
  const { type, data } = finishEvent(state, outcome);
  const result = outcome.result === undefined ? row.result : JSON.stringify(outcome.result ?? null);
  const error = outcome.error === undefined ? row.error : JSON.stringify(outcome.error);
  const set: JobUpdate = { state, result, error, finished_at: now, lease_token: null, lease_expires_at: null, ...also };
  return change(row, also.crash_count === undefined ? 'finish' : 'finish+crash', set, [{ type, data }], now, { stopsHandler: row.state === 'active' && state === 'cancelled' });
}

/** Expire: a job whose ttl ran out before it started fails as expired (see planFinish). */
export function planExpire(row: JobRow, now: number): Plan {
  return planFinish(row, 'expire', { error: expiredError() }, now);
}

/**
 * Reschedule: an active job goes back, later (retry with backoff) or now (lease lost, released),
 * with its job.retrying event. Takes the row, the action and what the row becomes; returns the
 * plan (runnable). Fails with TransitionError when the row is not active.
 */
export function planReschedule(
  row: JobRow,
  action: 'retry_later' | 'lease_lost' | 'release',
  next: { runAt: number; error: JobError; attemptsMade: number; crashCount: number },
  now: number,
): Plan {
  requireTransition(row, action);
  const state: JobState = next.runAt > now ? 'scheduled' : 'queued';
  const set: JobUpdate = {
    state,
    run_at: next.runAt,
    error: JSON.stringify(next.error),
    lease_token: null,
    lease_expires_at: null,
    started_at: null,
    attempts_made: next.attemptsMade,
    crash_count: next.crashCount,
  };
  return change(row, 'reschedule', set, [{ type: 'job.retrying', data: retryingData(next.error, row.attempts_made, next.runAt) }], now, { dispatch: true });
}

/** Fencing: the row a lease holder may still change, or null when the lease is no longer theirs. */
export function heldBy(row: JobRow | undefined | null, token: string): JobRow | null {
  return row && row.state === 'active' && row.lease_token === token ? row : null;
}

const LEASE_LOST: Outcome = Object.freeze({ accepted: false, reason: 'lease_lost' });

/**
 * Complete: a held job succeeds. Takes the stored row (or none), the caller's lease token, the
 * result, the time. Returns the plan (null when the lease is lost) and the outcome to report.
 */
export function planCompletion(row: JobRow | undefined, token: string, result: unknown, now: number): { plan: Plan | null; outcome: Outcome } {
  const held = heldBy(row, token);
  if (!held) return { plan: null, outcome: LEASE_LOST };
  const plan = planFinish(held, 'complete', { result }, now);
  return { plan, outcome: { accepted: true, job: rowToJob(plan.row) } };
}

/**
 * Fail: a held job's attempt failed; the lifecycle rules decide between a retry (rescheduled
 * with backoff, or when the handler asked) and failing for good. Takes the stored row, the lease
 * token, the failure, the time (and a random draw for jitter). Returns the plan (null when the
 * lease is lost) and the outcome.
 */
export function planFailure(row: JobRow | undefined, token: string, failure: AttemptFailure, now: number, random?: number): { plan: Plan | null; outcome: Outcome } {
  const held = heldBy(row, token);
  if (!held) return { plan: null, outcome: LEASE_LOST };
  const decision = decideAfterFailure({
    failure,
    attemptsMade: held.attempts_made,
    maxAttempts: held.max_attempts,
    backoff: JSON.parse(held.backoff) as BackoffPolicy,
    now,
    ...(random === undefined ? {} : { random }),
  });
  const plan =
    decision.kind === 'fail'
      ? planFinish(held, 'fail', { error: failure.error }, now)
      : planReschedule(held, 'retry_later', { runAt: decision.runAt, error: failure.error, attemptsMade: held.attempts_made, crashCount: held.crash_count }, now);
  return { plan, outcome: { accepted: true, job: rowToJob(plan.row) } };
}

/**
 * Recover a crash: the worker holding an active job died (its lease expired, or its process is
 * gone). The job runs again at once without using up the interrupted attempt, or fails after too
 * many crashes. Takes the row, the time and the crash limit; returns the plan. Fails with
 * TransitionError when the row is not active.
 */
export function planRecoverCrash(row: JobRow, now: number, maxCrashes: number): Plan {
  const crashes = row.crash_count + 1;
  // The crash that fails the job is counted in the stored row too.
  if (decideAfterCrash(crashes, maxCrashes) === 'fail') return planFinish(row, 'fail', { error: crashError(crashes) }, now, { crash_count: crashes });
  return planReschedule(row, 'lease_lost', { runAt: now, error: leaseExpiredError, attemptsMade: Math.max(0, row.attempts_made - 1), crashCount: crashes }, now);
}

/**
 * Release: a worker shutting down hands a held job back at once, the attempt not counted.
 * Takes the stored row, the lease token, the time; returns the plan, or null when the lease is
 * no longer the caller's (nothing to release).
 */
export function planRelease(row: JobRow | undefined, token: string, now: number): Plan | null {
  const held = heldBy(row, token);
  if (!held) return null;
  return planReschedule(held, 'release', { runAt: now, error: releasedError, attemptsMade: Math.max(0, held.attempts_made - 1), crashCount: held.crash_count }, now);
}

/**
 * Manual retry: a failed or cancelled job goes back to its queue with fresh attempts, with a
 * job.retrying event marked manual. Takes the row and the time; returns the plan (runnable).
 * Fails with TransitionError for any other state; the store's singleton index refuses it when a
 * live job holds the same singleton key (see retryRefused).
 */
export function planManualRetry(row: JobRow, now: number): Plan {
  requireTransition(row, 'manual_retry');
  const previous = row.error === null ? null : (JSON.parse(row.error) as JobError);
  const set: JobUpdate = {
    state: 'queued',
    run_at: now,
    error: null,
    result: null,
    progress: null,
    attempts_made: 0,
    crash_count: 0,
    started_at: null,
    finished_at: null,
    expires_at: null,
  };
  return change(row, 'manual_retry', set, [{ type: 'job.retrying', data: retryingData(previous, 0, now, true) }], now, { dispatch: true });
}

/**
 * Handler events: a running handler's progress, deltas and log lines after the row's last seq
 * (a run of deltas shares one row). Takes the stored row, the lease token, the events and the
 * time; returns the plan (last_seq and the latest progress), or null when the lease is lost.
 */
export function planAppend(row: JobRow | undefined, token: string, events: HandlerEvent[], now: number): Plan | null {
  const held = heldBy(row, token);
  if (!held) return null;
  const planned = planHandlerEvents(held.last_seq, events);
  const set: JobUpdate = planned.progress === undefined ? { last_seq: planned.lastSeq } : { last_seq: planned.lastSeq, progress: JSON.stringify(planned.progress) };
  return {
    row: { ...held, ...set },
    write: { kind: 'update', set, shape: planned.progress === undefined ? 'events' : 'events+progress' },
    eventRows: planned.rows.map((stored) => eventRow(held.id, stored.seq, stored.seqEnd, stored.type, now, stored.data)),
    events: planned.expanded.map((event) => jobEvent(held, event.seq, event.type, now, event.data)),
    dispatch: false,
    stopsHandler: false,
  };
}

export type DedupBy = NonNullable<AddedJob['deduplicatedBy']>;

/**
 * The dedup policy: which earlier job a submission is, checked in this order. Each rule names the
 * key a submission asks for and the key a stored row holds (a singleton key only while the job is live).
 */
const DEDUP_ORDER: { by: DedupBy; ofJob: (job: NewJob) => string | null; ofRow: (row: JobRow) => string | null }[] = [
  {
    by: 'fireTime',
    ofJob: (job) => (job.scheduleId !== null && job.fireAt != null ? `f:${job.scheduleId}:${job.fireAt}` : null),
    ofRow: (row) => (row.schedule_id !== null && row.fire_at !== null ? `f:${row.schedule_id}:${Number(row.fire_at)}` : null),
  },
  {
    by: 'idempotencyKey',
    ofJob: (job) => (job.idempotencyKey !== null ? `i:${job.ownerId}:${job.idempotencyKey}` : null),
    ofRow: (row) => (row.idempotency_key !== null ? `i:${row.owner_id}:${row.idempotency_key}` : null),
  },
  {
    by: 'singletonKey',
    ofJob: (job) => (job.singletonKey !== null ? `s:${job.ownerId}:${job.singletonKey}` : null),
    ofRow: (row) => (row.singleton_key !== null && LIVE_STATES.includes(row.state) ? `s:${row.owner_id}:${row.singleton_key}` : null),
  },
];

/** States in which a job holds its singleton key. */
export const LIVE_STATES: readonly JobState[] = ['queued', 'scheduled', 'active'];

/** Whether a submission has any key it is deduplicated by (so the store must look for earlier jobs). */
export function hasDedupKey(job: NewJob): boolean {
  return DEDUP_ORDER.some((rule) => rule.ofJob(job) !== null);
}

/**
 * Insert a batch: each submission is an earlier job (stored, or earlier in this batch) that
 * holds one of its keys, the first key in dedup order deciding, or a new job. Takes the
 * submissions, stored rows that may hold their keys (any superset will do), an id source and the
 * time. Returns one result per submission (`row` is the job; `plan` is set for a new one).
 * Cannot fail; the store's unique indexes catch a concurrent submission that took a key meanwhile.
 */
export function planSubmissions(
  jobs: NewJob[],
  candidates: readonly JobRow[],
  newId: () => string,
  now: number,
): { row: JobRow; plan: Plan | null; deduplicatedBy?: DedupBy }[] {
  const holders = new Map<string, JobRow>();
  const hold = (row: JobRow) => {
    for (const rule of DEDUP_ORDER) {
      const key = rule.ofRow(row);
      if (key !== null && !holders.has(key)) holders.set(key, row);
    }
  };
  candidates.forEach(hold);
  return jobs.map((job) => {
    for (const rule of DEDUP_ORDER) {
      const key = rule.ofJob(job);
      const earlier = key === null ? undefined : holders.get(key);
      if (earlier) return { row: earlier, plan: null, deduplicatedBy: rule.by };
    }
    const plan = planInsert(newId(), job, now);
    hold(plan.row);
    return { row: plan.row, plan };
  });
}

/** What may be deleted: finished jobs only. Fails with RefusedChange (a 409) for any other state. */
export function checkDeletable(row: JobRow): void {
  if (row.state === 'completed' || row.state === 'failed' || row.state === 'cancelled') return;
  throw new RefusedChange(`Only finished jobs can be deleted; this one is ${row.state}. Cancel it first.`);
}

/** A change the job's state does not allow, with a message for the caller (rendered as a 409). */
export class RefusedChange extends Error {}

export { TransitionError };
