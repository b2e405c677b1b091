import { randomBytes } from 'node:crypto';
import {
  crashError,
  decideAfterCrash,
  decideAfterFailure,
  ERROR_CODES,
  expiredError,
  nextState,
  type Action,
} from '../lifecycle.js';
import { rowToJob, type JobRow } from '../records.js';
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

export class TransitionError extends Error {
  constructor(
    readonly jobId: string,
    readonly from: JobState,
    readonly action: Action,
  ) {
    super(`A ${from} job cannot ${action.replace('_', ' ')}.`);
  }
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

function requireTransition(row: JobRow, action: Action): JobState {
  const to = nextState(row.state, action);
  if (to === null) throw new TransitionError(row.id, row.state, action);
  return to;
}

export function insertJob(ctx: WriteContext, id: string, job: NewJob): JobRow {
  // A run time in the past is kept as given (a schedule's fire time), the job is simply due.
  const runAt = job.runAt ?? ctx.now + (job.delayMs ?? 0);
  const state: JobState = runAt > ctx.now ? 'scheduled' : 'queued';
  const row: JobRow = {
    id,
    queue: job.queue,
    type: job.type,
    state,
    priority: job.priority,
    payload: JSON.stringify(job.payload ?? null),
    result: null,
    error: null,
    progress: null,
    attempts_made: 0,
    max_attempts: job.maxAttempts,
    crash_count: 0,
    backoff: JSON.stringify(job.backoff),
    timeout_ms: job.timeoutMs,
    expires_at: job.ttlMs === null ? null : Math.max(runAt, ctx.now) + job.ttlMs,
    idempotency_key: job.idempotencyKey,
    singleton_key: job.singletonKey,
    tags: JSON.stringify(job.tags),
    owner_id: job.ownerId,
    schedule_id: job.scheduleId,
    created_at: ctx.now,
    run_at: runAt,
    started_at: null,
    finished_at: null,
    lease_token: null,
    lease_expires_at: null,
    worker_id: null,
    last_seq: 0,
    fire_at: job.fireAt ?? null,
  };
  // The event first: it sets row.last_seq, so the job row is written once, complete.
  addEvent(ctx, row, 'job.created', {});
  ctx.st.insertJob.run(row);
  for (const tag of job.tags) ctx.st.insertTag.run(tag, ctx.now, id);
  if (state === 'queued') ctx.changes.available.add(job.queue);
  else ctx.changes.scheduledAt.push(runAt);
  return row;
}

/** Marks a claimable row active under a new lease. Returns null (and fails it) when its ttl has passed. */
export function activate(ctx: WriteContext, row: JobRow, workerId: string, leaseMs: number): Claim | null {
  if (row.expires_at !== null && row.expires_at <= ctx.now) {
    finish(ctx, row, 'expire', { error: expiredError() });
    return null;
  }
  requireTransition(row, 'claim');
  const token = randomBytes(16).toString('hex');
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
  const type: JobEventType = state === 'completed' ? 'job.completed' : state === 'failed' ? 'job.failed' : 'job.cancelled';
  const data: Record<string, unknown> =
    state === 'completed' ? { result: outcome.result ?? null } : state === 'failed' ? { error: outcome.error } : {};
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
  const seq = addEvent(ctx, row, 'job.retrying', { error: change.error, attempt: row.attempts_made, nextRunAt: new Date(change.runAt).toISOString() });
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
    error: { message: 'The worker running this job stopped before finishing it; running it again.', code: ERROR_CODES.leaseExpired },
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
    error: { message: 'The worker shut down before finishing this job; it runs again.', code: 'JOBLINE_RELEASED' },
    attemptsMade: Math.max(0, row.attempts_made - 1),
    crashCount: row.crash_count,
  });
}

export function appendHandlerEvents(ctx: WriteContext, jobId: string, token: string, events: HandlerEvent[]): boolean {
  const row = heldRow(ctx, jobId, token);
  if (!row) return false;
  let progress: unknown;
  let chunks: unknown[] = [];
  // Consecutive deltas share one row (seq..seq_end): a streaming handler writes a row per batch, not per chunk.
  const writeChunks = () => {
    if (chunks.length === 0) return;
    const first = row.last_seq + 1;
    const last = row.last_seq + chunks.length;
    ctx.st.insertEvent.run(row.id, first, chunks.length > 1 ? last : null, 'job.delta', ctx.now, JSON.stringify(chunks.length > 1 ? { chunks } : { chunk: chunks[0] }));
    chunks.forEach((chunk, index) =>
      ctx.changes.events.push({ type: 'job.delta', jobId: row.id, seq: first + index, at: ctx.now, data: { chunk }, queue: row.queue, ownerId: row.owner_id }),
    );
    row.last_seq = last;
    chunks = [];
  };
  for (const event of events) {
    if (event.type === 'job.delta') {
      chunks.push(event.data.chunk);
      continue;
    }
    writeChunks();
    addEvent(ctx, row, event.type, event.data);
    if (event.type === 'job.progress') progress = event.data.progress;
  }
  writeChunks();
  if (progress !== undefined) ctx.st.setProgress.run(JSON.stringify(progress), row.last_seq, row.id);
  else ctx.st.setLastSeq.run(row.last_seq, row.id);
  return true;
}

export function manualRetry(ctx: WriteContext, row: JobRow): JobRow {
  requireTransition(row, 'manual_retry');
  const seq = addEvent(ctx, row, 'job.retrying', {
    error: row.error === null ? null : (JSON.parse(row.error) as unknown),
    attempt: 0,
    nextRunAt: new Date(ctx.now).toISOString(),
    manual: true,
  });
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
