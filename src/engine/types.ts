/**
 * The engine port: everything the rest of Jobline asks of a job engine, in job terms. The
 * embedded (SQLite) engine and the BullMQ engine implement it; no storage type crosses it.
 * Pure types: no I/O is imported here.
 */

export const JOB_STATES = ['queued', 'scheduled', 'active', 'completed', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const FINISHED_STATES: readonly JobState[] = ['completed', 'failed', 'cancelled'];

export interface BackoffPolicy {
  type: 'fixed' | 'exponential';
  /** Base delay (ms). */
  delay: number;
  /** Upper bound of one delay (ms). */
  maxDelay?: number | undefined;
  /** 0–1: the delay varies randomly by up to this fraction, down or up. */
  jitter?: number | undefined;
}

export interface JobError {
  message: string;
  code?: string | undefined;
}

export interface Job {
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
  backoff: BackoffPolicy;
  timeoutMs: number | null;
  /** When the job fails as expired if it has not started (epoch ms), or null. */
  expiresAt: number | null;
  idempotencyKey: string | null;
  singletonKey: string | null;
  tags: string[];
  ownerId: string;
  scheduleId: string | null;
  createdAt: number;
  runAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** The seq of the job's latest event. */
  lastSeq: number;
}

/** What a submission asks for; the service has validated it and filled in defaults. */
export interface NewJob {
  type: string;
  queue: string;
  payload: unknown;
  priority: number;
  /** Not before this time (epoch ms); null: `delayMs` after the instant the engine stores as createdAt. */
  runAt: number | null;
  /** With no runAt: how long after its creation the job is due (default 0). */
  delayMs?: number | null;
  maxAttempts: number;
  backoff: BackoffPolicy;
  timeoutMs: number | null;
  ttlMs: number | null;
  idempotencyKey: string | null;
  singletonKey: string | null;
  tags: string[];
  ownerId: string;
  scheduleId: string | null;
  /** For a schedule's job, the fire time: one job per schedule and fire time, ever. */
  fireAt?: number | null;
}

export interface AddedJob {
  job: Job;
  /** false: an earlier job was returned (same idempotency key or fire time, or its singleton key is taken). */
  created: boolean;
  deduplicatedBy?: 'idempotencyKey' | 'singletonKey' | 'fireTime';
}

export const EVENT_TYPES = [
  'job.created',
  'job.active',
  'job.progress',
  'job.delta',
  'job.log',
  'job.retrying',
  'job.completed',
  'job.failed',
  'job.cancelled',
] as const;
export type JobEventType = (typeof EVENT_TYPES)[number];

export interface JobEvent {
  type: JobEventType;
  jobId: string;
  /** Starts at 1 and grows by 1 per job. */
  seq: number;
  at: number;
  data: Record<string, unknown>;
  /** Not part of the wire format: lets subscribers filter without loading the job. */
  queue: string;
  ownerId: string;
}

/** A job a worker holds: the lease token fences its completion against a later claimant. */
export interface Claim {
  job: Job;
  token: string;
  leaseExpiresAt: number;
  /** 1 for the first attempt. */
  attempt: number;
}

/** The worker's report of an attempt that did not succeed; the engine applies the lifecycle rules. */
export interface AttemptFailure {
  error: JobError;
  /** Retrying cannot help (NonRetriableError, a timeout with no attempts left is decided by rules). */
  nonRetriable: boolean;
  /** The handler asked to be retried no sooner than this (RetryAfterError). */
  retryAfterMs: number | null;
}

/** An event a running handler emits (progress, streamed output, log lines). */
export type HandlerEvent =
  | { type: 'job.progress'; data: { progress: unknown } }
  | { type: 'job.delta'; data: { chunk: unknown } }
  | { type: 'job.log'; data: { message: string } };

export type Outcome = { accepted: true; job: Job } | { accepted: false; reason: 'lease_lost' };

export interface JobFilter {
  ownerId?: string | undefined;
  scheduleId?: string | undefined;
  states?: JobState[] | undefined;
  queue?: string | undefined;
  type?: string | undefined;
  tag?: string | undefined;
  createdAfter?: number | undefined;
  createdBefore?: number | undefined;
}

export interface JobPage {
  items: Job[];
  /** Position after the last item; pass back as `after` for the next page. */
  next: { createdAt: number; id: string } | null;
}

export type QueueCounts = Record<JobState, number>;

export interface QueueInfo {
  name: string;
  paused: boolean;
  counts: QueueCounts;
}

export interface EngineCapabilities {
  /** Several processes may claim from one store (the BullMQ engine); embedded is one process. */
  multiProcess: boolean;
  /** The engine wakes idle workers itself when a job becomes available (no polling delay). */
  pushesAvailability: boolean;
}

export interface EngineListener {
  /** Events committed to the store, in commit order per job. */
  events?(events: JobEvent[]): void;
  /** A job became claimable (submitted, due, retried, resumed). */
  available?(queue: string): void;
  /** A job held by a worker was cancelled: its handler should stop. */
  cancelled?(jobId: string): void;
}

export interface RetentionPolicy {
  completedMs: number;
  failedMs: number;
}

export interface Engine {
  readonly name: string;
  readonly capabilities: EngineCapabilities;

  /** Starts background duties (sweeping leases, expiring ttl, retention). */
  start(): Promise<void>;
  /** Stops background duties and flushes buffered writes. */
  stop(): Promise<void>;
  subscribe(listener: EngineListener): () => void;

  /** Adds jobs in one all-or-nothing step; deduplicates by idempotency and singleton keys. */
  addJobs(jobs: NewJob[]): Promise<AddedJob[]>;
  getJob(id: string): Promise<Job | null>;
  listJobs(filter: JobFilter, page: { limit: number; after?: { createdAt: number; id: string } | undefined }): Promise<JobPage>;
  listEvents(jobId: string, afterSeq: number, limit: number): Promise<JobEvent[]>;
  /** Cancels a queued, scheduled or active job (an active one's handler is told to stop). */
  cancelJob(id: string): Promise<Job>;
  /** Puts a failed or cancelled job back in its queue with fresh attempts. */
  retryJob(id: string): Promise<Job>;
  /** Deletes a finished job and its events. */
  deleteJob(id: string): Promise<void>;

  /** Claims up to `limit` due jobs of the given types from a queue, highest priority first. */
  claimJobs(request: { queue: string; types: string[]; limit: number; workerId: string; leaseMs: number }): Promise<Claim[]>;
  /** Extends leases; returns the ids whose lease was lost (cancelled, expired and taken, finished). */
  renewLeases(claims: { jobId: string; token: string }[], leaseMs: number): Promise<string[]>;
  completeJob(claim: { jobId: string; token: string }, result: unknown): Promise<Outcome>;
  failJob(claim: { jobId: string; token: string }, failure: AttemptFailure): Promise<Outcome>;
  /** Returns claims to the queue at once without counting an attempt (graceful shutdown). */
  releaseJobs(claims: { jobId: string; token: string }[]): Promise<void>;
  appendEvents(claim: { jobId: string; token: string }, events: HandlerEvent[]): Promise<boolean>;

  listQueues(): Promise<QueueInfo[]>;
  /** Names of queues that have jobs waiting to be claimed (cheap: workers call it to find queues). */
  queuesWithWaitingJobs(): Promise<string[]>;
  pauseQueue(name: string): Promise<void>;
  resumeQueue(name: string): Promise<void>;
  /** Retries every failed job of a queue; returns how many. */
  retryFailed(queue: string): Promise<number>;
  /** Deletes finished jobs of a queue in a state, optionally only those finished before a time. */
  cleanQueue(queue: string, state: 'completed' | 'failed' | 'cancelled', finishedBefore: number | null): Promise<number>;
}
