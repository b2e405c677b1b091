import type { BackoffPolicy, Job, JobError, JobEvent, JobState } from '../engine/types.js';
import { toIso, toIsoOrNull } from '../utils/clock.js';

/**
 * The public wire format of jobs and their events: what the REST API, Socket.IO, SSE and webhooks
 * all send. One mapping from the engine's records, so every face shows the same fields.
 */

export interface PublicJob {
  id: string;
  type: string;
  queue: string;
  state: JobState;
  priority: number;
  payload: unknown;
  result: unknown;
  error: JobError | null;
  progress: unknown;
  attemptsMade: number;
  maxAttempts: number;
  tags: string[];
  createdAt: string;
  runAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  ownerId: string;
  scheduleId: string | null;
  backoff: BackoffPolicy;
  timeout: number | null;
  expiresAt: string | null;
  idempotencyKey: string | null;
  singletonKey: string | null;
}

export interface PublicEvent {
  type: string;
  jobId: string;
  seq: number;
  at: string;
  data: Record<string, unknown>;
}

export function toPublicJob(job: Job): PublicJob {
  return {
    id: job.id,
    type: job.type,
    queue: job.queue,
    state: job.state,
    priority: job.priority,
    payload: job.payload,
    result: job.result,
    error: job.error,
    progress: job.progress,
    attemptsMade: job.attemptsMade,
    maxAttempts: job.maxAttempts,
    tags: job.tags,
    createdAt: toIso(job.createdAt),
    runAt: toIso(job.runAt),
    startedAt: toIsoOrNull(job.startedAt),
    finishedAt: toIsoOrNull(job.finishedAt),
    ownerId: job.ownerId,
    scheduleId: job.scheduleId,
    backoff: job.backoff,
    timeout: job.timeoutMs,
    expiresAt: toIsoOrNull(job.expiresAt),
    idempotencyKey: job.idempotencyKey,
    singletonKey: job.singletonKey,
  };
}

export function toPublicEvent(event: JobEvent): PublicEvent {
  return { type: event.type, jobId: event.jobId, seq: event.seq, at: toIso(event.at), data: event.data };
}
