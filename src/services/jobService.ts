import { DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS } from '../engine/lifecycle.js';
import { FINISHED_STATES } from '../engine/types.js';
import { isFinalEvent, type Follower, type JobEventHub } from '../events/hub.js';
import type { AddedJob, BackoffPolicy, Engine, Job, JobFilter, JobState, NewJob } from '../engine/types.js';
import { AppError, errors } from '../utils/errors.js';
import { decodeCursor, encodeCursor, type Page } from '../utils/pagination.js';
import type { Principal } from '../access/principal.js';
import { toPublicEvent, toPublicJob, type PublicEvent, type PublicJob } from '../wire/jobs.js';

/** A job submission as a client sends it (validated for shape by the route schema). */
export interface JobInput {
  type: string;
  payload?: unknown;
  queue?: string | undefined;
  priority?: number | undefined;
  delay?: number | undefined;
  runAt?: string | undefined;
  attempts?: number | undefined;
  backoff?: Partial<BackoffPolicy> | undefined;
  timeout?: number | undefined;
  ttl?: number | undefined;
  idempotencyKey?: string | undefined;
  singletonKey?: string | undefined;
  tags?: string[] | undefined;
}

export interface JobTypes {
  /** The queue a type's jobs go to by default, or undefined when no handler knows the type. */
  defaultQueue(type: string): string | undefined;
  list(): string[];
}

export interface JobLimits {
  maxPayloadBytes: number;
}

export interface ListJobsQuery {
  state?: JobState[] | undefined;
  queue?: string | undefined;
  type?: string | undefined;
  tag?: string | undefined;
  createdAfter?: string | undefined;
  createdBefore?: string | undefined;
  limit: number;
  cursor?: string | undefined;
}

/** Submitting, reading and steering jobs, with ownership: a user sees their own jobs, an admin all. */
export class JobService {
  constructor(
    private readonly engine: Engine,
    private readonly types: JobTypes,
    private readonly limits: JobLimits,
    private readonly hub: JobEventHub,
  ) {}

  async submit(
    principal: Principal,
    input: JobInput,
    headerKey?: string,
  ): Promise<{ job: PublicJob; created: boolean; deduplicatedBy?: AddedJob['deduplicatedBy'] }> {
    if (headerKey !== undefined && input.idempotencyKey !== undefined && headerKey !== input.idempotencyKey) {
      throw errors.idempotencyConflict();
    }
    const job = this.buildJob(principal.userId, { ...input, idempotencyKey: headerKey ?? input.idempotencyKey });
    const [added] = await this.engine.addJobs([job]);
    if (!added) throw errors.internal(new Error('the engine added no job'));
    return { job: toPublicJob(added.job), created: added.created, deduplicatedBy: added.deduplicatedBy };
  }

  /** All or nothing: every job is checked before any is added, and they are added in one step. */
  async submitBulk(principal: Principal, inputs: JobInput[]): Promise<PublicJob[]> {
    const jobs = inputs.map((input, index) => {
      try {
        return this.buildJob(principal.userId, input);
      } catch (error) {
        // Name the offending job, so a client can find it among a thousand.
        if (error instanceof AppError) {
          throw new AppError(error.code, error.status, `jobs[${index}]: ${error.message}`, {
            extensions: { ...error.extensions, index },
          });
        }
        throw error;
      }
    });
    const added = await this.engine.addJobs(jobs);
    return added.map((entry) => toPublicJob(entry.job));
  }

  /** Adds a job built by buildJob (schedules use it). */
  async addJob(job: NewJob): Promise<AddedJob> {
    const [added] = await this.engine.addJobs([job]);
    if (!added) throw errors.internal(new Error('the engine added no job'));
    return added;
  }

  async get(principal: Principal, id: string): Promise<PublicJob> {
    return toPublicJob(await this.visibleJob(principal, id));
  }

  async list(principal: Principal, query: ListJobsQuery): Promise<Page<PublicJob>> {
    const filter: JobFilter = {
      ownerId: principal.role === 'admin' ? undefined : principal.userId,
      states: query.state,
      queue: query.queue,
      type: query.type,
      tag: query.tag,
      createdAfter: query.createdAfter === undefined ? undefined : Date.parse(query.createdAfter),
      createdBefore: query.createdBefore === undefined ? undefined : Date.parse(query.createdBefore),
    };
    let after: { createdAt: number; id: string } | undefined;
    if (query.cursor) {
      const [createdAt, id] = decodeCursor('jobs', query.cursor);
      if (typeof createdAt !== 'number' || typeof id !== 'string') throw errors.invalidCursor();
      after = { createdAt, id };
    }
    const page = await this.engine.listJobs(filter, { limit: query.limit, after });
    return {
      items: page.items.map(toPublicJob),
      nextCursor: page.next ? encodeCursor('jobs', [page.next.createdAt, page.next.id]) : null,
    };
  }

  async events(principal: Principal, id: string, fromSeq: number, limit: number): Promise<PublicEvent[]> {
    await this.visibleJob(principal, id);
    return (await this.engine.listEvents(id, fromSeq, limit)).map(toPublicEvent);
  }

  async cancel(principal: Principal, id: string): Promise<PublicJob> {
    await this.visibleJob(principal, id);
    return toPublicJob(await this.engine.cancelJob(id));
  }

  async retry(principal: Principal, id: string): Promise<PublicJob> {
    await this.visibleJob(principal, id);
    return toPublicJob(await this.engine.retryJob(id));
  }

  async delete(principal: Principal, id: string): Promise<void> {
    await this.visibleJob(principal, id);
    await this.engine.deleteJob(id);
  }

  /**
   * Streams a job's events after `fromSeq`, then live ones, and calls `end` after its final event
   * (at once when it had finished before `fromSeq`).
   */
  async follow(
    principal: Principal,
    id: string,
    fromSeq: number,
    handlers: { event(event: PublicEvent): void; end(): void; ready?(): Promise<void> | undefined },
  ): Promise<Follower> {
    await this.visibleJob(principal, id);
    let ended = false;
    let follower: Follower | null = null;
    const end = () => {
      if (ended) return;
      ended = true;
      follower?.close();
      handlers.end();
    };
    follower = this.hub.follow({
      jobId: id,
      fromSeq,
      deliver: (event) => {
        if (ended) return;
        handlers.event(toPublicEvent(event));
        if (isFinalEvent(event)) end();
      },
      caughtUp: () => {
        // Finished before fromSeq: nothing more will come.
        void this.engine.getJob(id).then((job) => {
          if (!job || (FINISHED_STATES.includes(job.state) && job.lastSeq <= fromSeq)) end();
        }, end);
      },
      onError: end,
      ...(handlers.ready ? { ready: handlers.ready } : {}),
    });
    return { close: end };
  }


  /** Answers when the job finishes, or with the job as it is when `waitMs` runs out. */
  async waitForResult(principal: Principal, id: string, waitMs: number, signal?: AbortSignal): Promise<PublicJob> {
    const job = await this.visibleJob(principal, id);
    if (FINISHED_STATES.includes(job.state) || waitMs === 0 || signal?.aborted) return toPublicJob(job);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, waitMs);
      const follower = this.hub.follow({ jobId: id, fromSeq: job.lastSeq, deliver: (event) => isFinalEvent(event) && done(), onError: done });
      signal?.addEventListener('abort', done, { once: true });
      function done() {
        clearTimeout(timer);
        follower.close();
        signal?.removeEventListener('abort', done);
        resolve();
      }
    });
    return toPublicJob(await this.visibleJob(principal, id));
  }

  /** The job, if this principal may see it; another user's job is "not found", not "forbidden". */
  async visibleJob(principal: Principal, id: string): Promise<Job> {
    const job = await this.engine.getJob(id);
    if (!job || (principal.role !== 'admin' && job.ownerId !== principal.userId)) throw errors.jobNotFound();
    return job;
  }

  /**
   * Checks a submission (known type, payload size, times) and fills in defaults. Schedules use it
   * for their job template, with the fire time as run time.
   */
  buildJob(ownerId: string, input: JobInput, fromSchedule?: { scheduleId: string; fireAt: number | null }): NewJob {
    const defaultQueue = this.types.defaultQueue(input.type);
    if (defaultQueue === undefined) throw errors.unknownJobType(input.type, this.types.list());
    const payloadBytes = Buffer.byteLength(JSON.stringify(input.payload ?? null));
    if (payloadBytes > this.limits.maxPayloadBytes) throw errors.payloadTooLargeForJob(this.limits.maxPayloadBytes);
    if (input.delay !== undefined && input.runAt !== undefined) throw errors.badRequest('Send delay or runAt, not both.');
    const runAt = fromSchedule?.fireAt ?? (input.runAt !== undefined ? Date.parse(input.runAt) : null);
    return {
      type: input.type,
      queue: input.queue ?? defaultQueue,
      payload: input.payload ?? null,
      priority: input.priority ?? 0,
      runAt,
      delayMs: runAt === null ? (input.delay ?? null) : null,
      maxAttempts: input.attempts ?? DEFAULT_MAX_ATTEMPTS,
      backoff: { ...DEFAULT_BACKOFF, ...input.backoff },
      timeoutMs: input.timeout ?? null,
      ttlMs: input.ttl ?? null,
      idempotencyKey: input.idempotencyKey ?? null,
      singletonKey: input.singletonKey ?? null,
      tags: [...new Set(input.tags ?? [])],
      ownerId,
      scheduleId: fromSchedule?.scheduleId ?? null,
      fireAt: fromSchedule?.fireAt ?? null,
    };
  }
}
