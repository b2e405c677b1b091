import { ERROR_CODES, nextState, type Action } from './lifecycle.js';
import type { JobRow } from './rows.js';
import type { HandlerEvent, JobError, JobEventType, JobState, NewJob } from './types.js';

/**
 * What a state change of a job row looks like, shared by the engines that keep jobs in SQL (the
 * embedded engine on SQLite, the BullMQ engine on PostgreSQL): the new row, the event each
 * transition writes, and how a handler's events become stored rows. Pure: each engine writes
 * the result with its own driver.
 */

export class TransitionError extends Error {
  constructor(
    readonly jobId: string,
    readonly from: JobState,
    readonly action: Action,
  ) {
    super(`A ${from} job cannot ${action.replace('_', ' ')}.`);
  }
}

export function requireTransition(row: Pick<JobRow, 'id' | 'state'>, action: Action): JobState {
  const to = nextState(row.state, action);
  if (to === null) throw new TransitionError(row.id, row.state, action);
  return to;
}

/** The row of a new job (last_seq 0: the caller adds its job.created event). */
export function newJobRow(id: string, job: NewJob, now: number): JobRow {
  // A run time in the past is kept as given (a schedule's fire time), the job is simply due.
  const runAt = job.runAt ?? now + (job.delayMs ?? 0);
  return {
    id,
    queue: job.queue,
    type: job.type,
    state: runAt > now ? 'scheduled' : 'queued',
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
    expires_at: job.ttlMs === null ? null : Math.max(runAt, now) + job.ttlMs,
    idempotency_key: job.idempotencyKey,
    singleton_key: job.singletonKey,
    tags: JSON.stringify(job.tags),
    owner_id: job.ownerId,
    schedule_id: job.scheduleId,
    created_at: now,
    run_at: runAt,
    started_at: null,
    finished_at: null,
    lease_token: null,
    lease_expires_at: null,
    worker_id: null,
    last_seq: 0,
    fire_at: job.fireAt ?? null,
  };
}

/** The event a finishing transition writes. */
export function finishEvent(state: JobState, outcome: { result?: unknown; error?: JobError }): { type: JobEventType; data: Record<string, unknown> } {
  if (state === 'completed') return { type: 'job.completed', data: { result: outcome.result ?? null } };
  if (state === 'failed') return { type: 'job.failed', data: { error: outcome.error } };
  return { type: 'job.cancelled', data: {} };
}

export function retryingData(error: JobError | null, attempt: number, runAt: number, manual = false): Record<string, unknown> {
  return { error, attempt, nextRunAt: new Date(runAt).toISOString(), ...(manual ? { manual: true } : {}) };
}

export const leaseExpiredError: JobError = Object.freeze({
  message: 'The worker running this job stopped before finishing it; running it again.',
  code: ERROR_CODES.leaseExpired,
});

export const releasedError: JobError = Object.freeze({
  message: 'The worker shut down before finishing this job; it runs again.',
  code: 'JOBLINE_RELEASED',
});

/** One stored event row: a single event, or a run of deltas (seq..seqEnd). */
export interface EventRowPlan {
  seq: number;
  seqEnd: number | null;
  type: JobEventType;
  data: Record<string, unknown>;
}

/**
 * A running handler's events as rows after `lastSeq`: consecutive deltas share one row, so a
 * streaming handler writes a row per batch, not per chunk. Also the expanded events (one per
 * seq), the new last seq, and the latest progress, if any.
 */
export function planHandlerEvents(
  lastSeq: number,
  events: HandlerEvent[],
): { rows: EventRowPlan[]; expanded: { seq: number; type: JobEventType; data: Record<string, unknown> }[]; lastSeq: number; progress: unknown } {
  const rows: EventRowPlan[] = [];
  const expanded: { seq: number; type: JobEventType; data: Record<string, unknown> }[] = [];
  let seq = lastSeq;
  let progress: unknown;
  let chunks: unknown[] = [];
  const writeChunks = () => {
    if (chunks.length === 0) return;
    const first = seq + 1;
    rows.push({
      seq: first,
      seqEnd: chunks.length > 1 ? seq + chunks.length : null,
      type: 'job.delta',
      data: chunks.length > 1 ? { chunks } : { chunk: chunks[0] },
    });
    chunks.forEach((chunk, index) => expanded.push({ seq: first + index, type: 'job.delta', data: { chunk } }));
    seq += chunks.length;
    chunks = [];
  };
  for (const event of events) {
    if (event.type === 'job.delta') {
      chunks.push(event.data.chunk);
      continue;
    }
    writeChunks();
    seq += 1;
    rows.push({ seq, seqEnd: null, type: event.type, data: event.data });
    expanded.push({ seq, type: event.type, data: event.data });
    if (event.type === 'job.progress') progress = event.data.progress;
  }
  writeChunks();
  return { rows, expanded, lastSeq: seq, progress };
}
