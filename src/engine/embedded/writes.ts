import { randomUUID } from 'node:crypto';
import { crashError, decideAfterCrash, decideAfterFailure, expiredError } from '../lifecycle.js';
import { rowToJob, type JobRow } from '../records.js';
import {
  finishEvent,
  leaseExpiredError,
  newJobRow,
  planHandlerEvents,
  releasedError,
  requireTransition,
  retryingData,
} from '../transitions.js';
import type { AttemptFailure, Claim, HandlerEvent, JobError, JobEvent, JobEventType, JobState, NewJob, Outcome } from '../types.js';
import type { Statements } from './statements.js';

/**
 * The embedded engine's state changes. Each runs inside a caller's transaction, writes the new
 * state and its event rows together (the outbox), and records what to announce after commit.
 */

export class Changes {
  readonly events: JobEvent[] = [];
  readonly available = new Set<string>();
  readonly cancelledActive: string[] = [];
  /** run_at of jobs that became scheduled, to arm the due timer. */
  readonly scheduledAt: number[] = [];
}

export interface WriteContext {
  st: Statements;
  now: number;
  changes: Changes;
  maxCrashes: number;
}

function addEvent(ctx: WriteContext, row: JobRow, type: JobEventType, data: Record<string, unknown>): number {
  const seq = row.last_seq + 1;
  row.last_seq = seq;
  ctx.st.insertEvent.run(row.id, seq, null, type, ctx.now, JSON.stringify(data));
  ctx.changes.events.push({ type, jobId: row.id, seq, at: ctx.now, data, queue: row.queue, ownerId: row.owner_id });
  return seq;
}

export function insertJob(ctx: WriteContext, id: string, job: NewJob): JobRow {
  const row = newJobRow(id, job, ctx.now);
  // The event first: it sets row.last_seq, so the job row is written once, complete.
  addEvent(ctx, row, 'job.created', {});
  ctx.st.insertJob.run(row);
  for (const tag of job.tags) ctx.st.insertTag.run(tag, ctx.now, id);
  if (row.state === 'queued') ctx.changes.available.add(job.queue);
  else ctx.changes.scheduledAt.push(row.run_at);
  return row;
}

/** Marks a claimable row active under a new lease. Returns null (and fails it) when its ttl has passed. */
export function activate(ctx: WriteContext, row: JobRow, workerId: string, leaseMs: number): Claim | null {
  if (row.expires_at !== null && row.expires_at <= ctx.now) {
    finish(ctx, row, 'expire', { error: expiredError() });
    return null;
  }
  requireTransition(row, 'claim');
  // randomUUID draws from a cached entropy pool: a fresh randomBytes call per claim cost more than the claim's SQL.
  const token = randomUUID();
  const attempt = row.attempts_made + 1;
  const seq = addEvent(ctx, row, 'job.active', { attempt, workerId });
  const leaseExpiresAt = ctx.now + leaseMs;
  ctx.st.markActive.run({ id: row.id, now: ctx.now, token, lease_expires_at: leaseExpiresAt, worker_id: workerId, seq });
  const job = rowToJob({ ...row, state: 'active', attempts_made: attempt, started_at: ctx.now, last_seq: seq });
  return { job, token, leaseExpiresAt, attempt };
}

/** Moves a row to completed, failed or cancelled, with its event. */
export function finish(
  ctx: WriteContext,
  row: JobRow,
  action: 'complete' | 'fail' | 'cancel' | 'expire',
  outcome: { result?: unknown; error?: JobError },
): JobRow {
  const state = requireTransition(row, action);
  const { type, data } = finishEvent(state, outcome);
  if (row.state === 'active' && state === 'cancelled') ctx.changes.cancelledActive.push(row.id);
  const seq = addEvent(ctx, row, type, data);
  const result = outcome.result === undefined ? row.result : JSON.stringify(outcome.result ?? null);
  const error = outcome.error === undefined ? row.error : JSON.stringify(outcome.error);
  ctx.st.markFinished.run({ id: row.id, state, result, error, now: ctx.now, seq });
  return { ...row, state, result, error, finished_at: ctx.now, lease_token: null, lease_expires_at: null, last_seq: seq };
}

/** Puts an active job back: later (retry with backoff) or now (lease lost, released by its worker). */
function reschedule(
  ctx: WriteContext,
  row: JobRow,
  action: 'retry_later' | 'lease_lost' | 'release',
  change: { runAt: number; error: JobError; attemptsMade: number; crashCount: number },
): JobRow {
  requireTransition(row, action);
  const state: JobState = change.runAt > ctx.now ? 'scheduled' : 'queued';
  const seq = addEvent(ctx, row, 'job.retrying', retryingData(change.error, row.attempts_made, change.runAt));
  ctx.st.markScheduled.run({
    id: row.id,
    state,
    run_at: change.runAt,
    error: JSON.stringify(change.error),
    attempts_made: change.attemptsMade,
    crash_count: change.crashCount,
    seq,
  });
  if (state === 'queued') ctx.changes.available.add(row.queue);
  else ctx.changes.scheduledAt.push(change.runAt);
  return { ...row, state, run_at: change.runAt, last_seq: seq };
}

/** The row a lease holder may change, or null when the lease is no longer theirs. */
export function heldRow(ctx: WriteContext, jobId: string, token: string): JobRow | null {
  const row = ctx.st.jobById.get(jobId) as JobRow | undefined;
  return row && row.state === 'active' && row.lease_token === token ? row : null;
}

export function complete(ctx: WriteContext, jobId: string, token: string, result: unknown): Outcome {
  const row = heldRow(ctx, jobId, token);
  if (!row) return { accepted: false, reason: 'lease_lost' };
  return { accepted: true, job: rowToJob(finish(ctx, row, 'complete', { result })) };
}

export function fail(ctx: WriteContext, jobId: string, token: string, failure: AttemptFailure): Outcome {
  const row = heldRow(ctx, jobId, token);
  if (!row) return { accepted: false, reason: 'lease_lost' };
  const decision = decideAfterFailure({
    failure,
    attemptsMade: row.attempts_made,
    maxAttempts: row.max_attempts,
    backoff: JSON.parse(row.backoff) as Parameters<typeof decideAfterFailure>[0]['backoff'],
    now: ctx.now,
  });
  const next =
    decision.kind === 'fail'
      ? finish(ctx, row, 'fail', { error: failure.error })
      : reschedule(ctx, row, 'retry_later', {
          runAt: decision.runAt,
          error: failure.error,
          attemptsMade: row.attempts_made,
          crashCount: row.crash_count,
        });
  return { accepted: true, job: rowToJob(next) };
}

/** A worker died holding the job (or it was left active by a crashed process). */
export function recoverCrashed(ctx: WriteContext, row: JobRow): void {
  const crashes = row.crash_count + 1;
  if (decideAfterCrash(crashes, ctx.maxCrashes) === 'fail') {
    finish(ctx, { ...row, crash_count: crashes }, 'fail', { error: crashError(crashes) });
    return;
  }
  reschedule(ctx, row, 'lease_lost', {
    runAt: ctx.now,
    error: leaseExpiredError,
    // The interrupted attempt did not finish, so it does not use up one of the job's attempts.
    attemptsMade: Math.max(0, row.attempts_made - 1),
    crashCount: crashes,
  });
}

export function release(ctx: WriteContext, jobId: string, token: string): void {
  const row = heldRow(ctx, jobId, token);
  if (!row) return;
  reschedule(ctx, row, 'release', {
    runAt: ctx.now,
    error: releasedError,
    attemptsMade: Math.max(0, row.attempts_made - 1),
    crashCount: row.crash_count,
  });
}

export function appendHandlerEvents(ctx: WriteContext, jobId: string, token: string, events: HandlerEvent[]): boolean {
  const row = heldRow(ctx, jobId, token);
  if (!row) return false;
  const plan = planHandlerEvents(row.last_seq, events);
  for (const stored of plan.rows) ctx.st.insertEvent.run(row.id, stored.seq, stored.seqEnd, stored.type, ctx.now, JSON.stringify(stored.data));
  for (const event of plan.expanded) ctx.changes.events.push({ ...event, jobId: row.id, at: ctx.now, queue: row.queue, ownerId: row.owner_id });
  row.last_seq = plan.lastSeq;
  if (plan.progress !== undefined) ctx.st.setProgress.run(JSON.stringify(plan.progress), row.last_seq, row.id);
  else ctx.st.setLastSeq.run(row.last_seq, row.id);
  return true;
}

export function manualRetry(ctx: WriteContext, row: JobRow): JobRow {
  requireTransition(row, 'manual_retry');
  const seq = addEvent(ctx, row, 'job.retrying', retryingData(row.error === null ? null : (JSON.parse(row.error) as JobError), 0, ctx.now, true));
  ctx.st.markRetried.run({ id: row.id, now: ctx.now, seq });
  ctx.changes.available.add(row.queue);
  return ctx.st.jobById.get(row.id) as JobRow;
}

/** Removes a job with its events and tags. */
export function deleteJob(st: Statements, jobId: string): void {
  st.deleteEvents.run(jobId);
  st.deleteTags.run(jobId);
  st.deleteJob.run(jobId);
}
