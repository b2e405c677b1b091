import type { Selectable } from 'kysely';
import type { JobEventsTable, JobsTable } from '../db/schema.js';
import { JOB_STATES, type BackoffPolicy, type Job, type JobEvent, type JobEventType, type QueueCounts } from './types.js';

/**
 * Job and event rows as both SQL stores hold them, and how they read as jobs and events. Pure:
 * no I/O (the plans in changes.ts build on these).
 */

export type JobRow = Selectable<JobsTable>;
export type JobEventRow = Selectable<JobEventsTable>;

export function parseJson(text: string | null): unknown {
  return text === null ? null : (JSON.parse(text) as unknown);
}

export function rowToJob(row: JobRow): Job {
  return {
    id: row.id,
    type: row.type,
    queue: row.queue,
    state: row.state,
    priority: row.priority,
    payload: parseJson(row.payload),
    result: parseJson(row.result),
    error: parseJson(row.error) as Job['error'],
    progress: parseJson(row.progress),
    attemptsMade: row.attempts_made,
    maxAttempts: row.max_attempts,
    backoff: JSON.parse(row.backoff) as BackoffPolicy,
    timeoutMs: row.timeout_ms,
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
    idempotencyKey: row.idempotency_key,
    singletonKey: row.singleton_key,
    tags: JSON.parse(row.tags) as string[],
    ownerId: row.owner_id,
    scheduleId: row.schedule_id,
    createdAt: Number(row.created_at),
    runAt: Number(row.run_at),
    startedAt: row.started_at === null ? null : Number(row.started_at),
    finishedAt: row.finished_at === null ? null : Number(row.finished_at),
    lastSeq: row.last_seq,
  };
}

/** The events a stored row holds: one, or a coalesced run of deltas (seq..seq_end). */
export function rowToEvents(row: JobEventRow, job: { queue: string; ownerId: string }): JobEvent[] {
  const base = { type: row.type as JobEventType, jobId: row.job_id, at: Number(row.at), queue: job.queue, ownerId: job.ownerId };
  const data = JSON.parse(row.data) as Record<string, unknown>;
  if (row.seq_end === null) return [{ ...base, seq: row.seq, data }];
  const chunks = data['chunks'] as unknown[];
  return chunks.map((chunk, index) => ({ ...base, seq: row.seq + index, data: { chunk } }));
}

export function emptyCounts(): QueueCounts {
  return Object.fromEntries(JOB_STATES.map((state) => [state, 0])) as QueueCounts;
}

