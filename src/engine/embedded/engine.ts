import type SqliteDatabase from 'better-sqlite3';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { isUniqueViolation } from '../../db/errors.js';
import type { Database } from '../../db/schema.js';
import type { Clock } from '../../utils/clock.js';
import { errors, toError } from '../../utils/errors.js';
import { newId } from '../../utils/ids.js';
import { DEFAULT_MAX_CRASHES, expiredError, retentionCutoffs } from '../lifecycle.js';
import { JobRecords, rowToJob, type JobRow } from '../records.js';
import type {
  AddedJob,
  AttemptFailure,
  Claim,
  Engine,
  EngineListener,
  HandlerEvent,
  Job,
  JobEvent,
  JobFilter,
  JobPage,
  NewJob,
  Outcome,
  QueueInfo,
  RetentionPolicy,
} from '../types.js';
import { prepareStatements, type Statements } from './statements.js';
import * as writes from './writes.js';
import { TransitionError } from '../transitions.js';
import { Changes, type WriteContext } from './writes.js';

export interface EmbeddedEngineOptions {
  sqlite: SqliteDatabase.Database;
  /** The same database through Kysely, for the record reads shared with the BullMQ engine. */
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  retention: RetentionPolicy;
  maxCrashes?: number;
  sweepIntervalMs?: number;
}

interface PendingWrite {
  run(ctx: WriteContext): unknown;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

const SWEEP_BATCH = 500;
/** Retention deletes this many jobs per transaction, yielding between chunks. */
const RETENTION_CHUNK = 100;
const MAX_TIMER_MS = 3_600_000;

/**
 * The embedded engine: jobs in SQLite, dispatch in this process. Every change is a short
 * synchronous transaction (state and event rows together); completions, failures and handler
 * events arriving in the same tick share one transaction.
 */
export class EmbeddedEngine implements Engine {
  readonly name = 'embedded';
  readonly capabilities = { multiProcess: false, pushesAvailability: true };
  private readonly st: Statements;
  private readonly records: JobRecords;
  private readonly listeners = new Set<EngineListener>();
  private readonly paused = new Set<string>();
  private readonly maxCrashes: number;
  private pending: PendingWrite[] = [];
  private flushScheduled = false;
  private sweepTimer: NodeJS.Timeout | null = null;
  private dueTimer: { at: number; handle: NodeJS.Timeout } | null = null;
  private lastRetentionAt = 0;
  private running = false;

  constructor(private readonly options: EmbeddedEngineOptions) {
    this.st = prepareStatements(options.sqlite);
    this.records = new JobRecords(options.db);
    this.maxCrashes = options.maxCrashes ?? DEFAULT_MAX_CRASHES;
  }

  async start(): Promise<void> {
    for (const { name } of this.st.pausedQueues.all()) this.paused.add(name);
    // One process owns an embedded store: whatever is active now was left by a process that died.
    const orphans = this.transact((ctx) => {
      const rows = this.st.allActive.all();
      for (const row of rows) writes.recoverCrashed(ctx, row);
      return rows.length;
    });
    if (orphans > 0) this.options.logger.warn({ jobs: orphans }, 'recovered jobs left active by a previous process');
    this.running = true;
    this.sweepTimer = setInterval(() => this.sweep(), this.options.sweepIntervalMs ?? 1000);
    this.sweepTimer.unref();
    this.armDueTimer(this.st.earliestScheduled.get()?.run_at ?? null);
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.dueTimer) clearTimeout(this.dueTimer.handle);
    this.sweepTimer = null;
    this.dueTimer = null;
    this.flush();
  }

  subscribe(listener: EngineListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async addJobs(jobs: NewJob[]): Promise<AddedJob[]> {
    return this.transact((ctx) =>
      jobs.map((job): AddedJob => {
        if (job.scheduleId !== null && job.fireAt != null) {
          const existing = this.st.jobByFireTime.get(job.scheduleId, job.fireAt);
          if (existing) return { job: rowToJob(existing), created: false, deduplicatedBy: 'fireTime' };
        }
        if (job.idempotencyKey !== null) {
          const existing = this.st.jobByIdempotencyKey.get(job.ownerId, job.idempotencyKey);
          if (existing) return { job: rowToJob(existing), created: false, deduplicatedBy: 'idempotencyKey' };
        }
        if (job.singletonKey !== null) {
          const existing = this.st.liveJobBySingletonKey.get(job.ownerId, job.singletonKey);
          if (existing) return { job: rowToJob(existing), created: false, deduplicatedBy: 'singletonKey' };
        }
        return { job: rowToJob(writes.insertJob(ctx, newId(), job)), created: true };
      }),
    );
  }

  getJob(id: string): Promise<Job | null> {
    return this.records.get(id);
  }

  listJobs(filter: JobFilter, page: { limit: number; after?: { createdAt: number; id: string } }): Promise<JobPage> {
    return this.records.list(filter, page);
  }

  listEvents(jobId: string, afterSeq: number, limit: number): Promise<JobEvent[]> {
    return this.records.events(jobId, afterSeq, limit);
  }

  async cancelJob(id: string): Promise<Job> {
    return this.transact((ctx) => rowToJob(writes.finish(ctx, this.rowOrThrow(id), 'cancel', {})));
  }

  async retryJob(id: string): Promise<Job> {
    return this.transact((ctx) => {
      const row = this.rowOrThrow(id);
      try {
        return rowToJob(writes.manualRetry(ctx, row));
      } catch (error) {
        if (isUniqueViolation(error) && row.singleton_key !== null) {
          const holder = this.st.liveJobBySingletonKey.get(row.owner_id, row.singleton_key);
          throw errors.singletonTaken(holder?.id ?? '');
        }
        throw error;
      }
    });
  }

  async deleteJob(id: string): Promise<void> {
    this.transact(() => {
      const row = this.rowOrThrow(id);
      if (row.state !== 'completed' && row.state !== 'failed' && row.state !== 'cancelled') {
        throw errors.jobStateConflict(`Only finished jobs can be deleted; this one is ${row.state}. Cancel it first.`);
      }
      writes.deleteJob(this.st, id);
    });
  }

  async claimJobs(request: { queue: string; types: string[]; limit: number; workerId: string; leaseMs: number }): Promise<Claim[]> {
    if (!this.running || this.paused.has(request.queue) || request.limit <= 0) return [];
    return this.transact((ctx) => {
      const claims: Claim[] = [];
      for (const type of request.types) {
        const rows = this.st.nextClaimable.all(request.queue, type, request.limit - claims.length);
        for (const row of rows) {
          const claim = writes.activate(ctx, row, request.workerId, request.leaseMs);
          if (claim) claims.push(claim);
        }
        if (claims.length >= request.limit) break;
      }
      return claims;
    });
  }

  async renewLeases(claims: { jobId: string; token: string }[], leaseMs: number): Promise<string[]> {
    const until = this.options.clock.now() + leaseMs;
    return this.transact(() =>
      claims.filter((claim) => this.st.renewLease.run(until, claim.jobId, claim.token).changes === 0).map((claim) => claim.jobId),
    );
  }

  completeJob(claim: { jobId: string; token: string }, result: unknown): Promise<Outcome> {
    return this.enqueue((ctx) => writes.complete(ctx, claim.jobId, claim.token, result));
  }

  failJob(claim: { jobId: string; token: string }, failure: AttemptFailure): Promise<Outcome> {
    return this.enqueue((ctx) => writes.fail(ctx, claim.jobId, claim.token, failure));
  }

  appendEvents(claim: { jobId: string; token: string }, events: HandlerEvent[]): Promise<boolean> {
    return this.enqueue((ctx) => writes.appendHandlerEvents(ctx, claim.jobId, claim.token, events));
  }

  async releaseJobs(claims: { jobId: string; token: string }[]): Promise<void> {
    this.flush();
    this.transact((ctx) => {
      for (const claim of claims) writes.release(ctx, claim.jobId, claim.token);
    });
  }

  listQueues(): Promise<QueueInfo[]> {
    return this.records.queues();
  }

  async queuesWithWaitingJobs(): Promise<string[]> {
    return this.st.queuesWithWaitingJobs.all().map(({ queue }) => queue);
  }

  async pauseQueue(name: string): Promise<void> {
    this.st.upsertQueue.run(name, 1, this.options.clock.now());
    this.paused.add(name);
  }

  async resumeQueue(name: string): Promise<void> {
    this.st.upsertQueue.run(name, 0, this.options.clock.now());
    this.paused.delete(name);
    const changes = new Changes();
    changes.available.add(name);
    this.announce(changes);
  }

  async retryFailed(queue: string): Promise<number> {
    return this.transact((ctx) => {
      let count = 0;
      const skipped = new Set<string>();
      for (;;) {
        const ids = this.st.failedInQueue.all(queue, SWEEP_BATCH + skipped.size).filter(({ id }) => !skipped.has(id));
        if (ids.length === 0) return count;
        for (const { id } of ids) {
          try {
            this.nested(ctx, (inner) => writes.manualRetry(inner, this.rowOrThrow(id)));
            count += 1;
          } catch (error) {
            // Its singleton key is held by a live job: leave this one failed.
            if (!isUniqueViolation(error)) throw error;
            skipped.add(id);
          }
        }
      }
    });
  }

  async cleanQueue(queue: string, state: 'completed' | 'failed' | 'cancelled', finishedBefore: number | null): Promise<number> {
    return this.transact(() => {
      let count = 0;
      for (;;) {
        const ids = this.st.finishedInQueue.all(queue, state, finishedBefore, finishedBefore, SWEEP_BATCH);
        if (ids.length === 0) return count;
        for (const { id } of ids) {
          writes.deleteJob(this.st, id);
        }
        count += ids.length;
      }
    });
  }

  /** Runs `fn` in one immediate transaction, then tells listeners what it changed. */
  private transact<T>(fn: (ctx: WriteContext) => T): T {
    // better-sqlite3 would quietly turn this into a savepoint of someone else's transaction
    // (a Kysely one awaiting on the shared connection): fail loudly instead.
    if (this.options.sqlite.inTransaction) throw new Error('embedded engine: a transaction is already open on the connection');
    const ctx: WriteContext = { st: this.st, now: this.options.clock.now(), changes: new Changes(), maxCrashes: this.maxCrashes };
    let result: T;
    try {
      result = this.options.sqlite.transaction(() => fn(ctx)).immediate();
    } catch (error) {
      if (error instanceof TransitionError) throw errors.jobStateConflict(error.message);
      throw error;
    }
    this.announce(ctx.changes);
    return result;
  }

  /** Runs `fn` in a savepoint; what it changed is kept only if it succeeds. */
  private nested<T>(ctx: WriteContext, fn: (inner: WriteContext) => T): T {
    const inner: WriteContext = { ...ctx, changes: new Changes() };
    const value = this.options.sqlite.transaction(() => fn(inner))();
    ctx.changes.events.push(...inner.changes.events);
    ctx.changes.cancelledActive.push(...inner.changes.cancelledActive);
    ctx.changes.scheduledAt.push(...inner.changes.scheduledAt);
    for (const queue of inner.changes.available) ctx.changes.available.add(queue);
    return value;
  }

  private enqueue<T>(run: (ctx: WriteContext) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Commits every queued write in one transaction. Should one write throw (a bug, never an
   * expected outcome), the batch is rolled back and run again with a savepoint per write, so
   * the bad write fails alone.
   */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    let values: unknown[];
    try {
      values = this.transact((ctx) => batch.map((write) => write.run(ctx)));
    } catch {
      this.flushOneByOne(batch);
      return;
    }
    batch.forEach((write, index) => write.resolve(values[index]));
  }

  private flushOneByOne(batch: PendingWrite[]): void {
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: Error })[] = [];
    try {
      this.transact((ctx) => {
        for (const write of batch) {
          try {
            outcomes.push({ ok: true, value: this.nested(ctx, (inner) => write.run(inner)) });
          } catch (error) {
            outcomes.push({ ok: false, error: toError(error) });
          }
        }
      });
    } catch (error) {
      for (const write of batch) write.reject(toError(error));
      return;
    }
    batch.forEach((write, index) => {
      const outcome = outcomes[index];
      if (outcome?.ok) write.resolve(outcome.value);
      else write.reject(outcome?.error ?? new Error('write lost'));
    });
  }

  /** Tells listeners what a committed transaction changed; a failing listener is logged and the others still hear. */
  private announce(changes: Changes): void {
    const tell = (call: (listener: EngineListener) => void) => {
      for (const listener of this.listeners) {
        try {
          call(listener);
        } catch (error) {
          this.options.logger.error({ err: toError(error) }, 'an engine listener failed');
        }
      }
    };
    if (changes.events.length > 0) tell((listener) => listener.events?.(changes.events));
    for (const jobId of changes.cancelledActive) tell((listener) => listener.cancelled?.(jobId));
    for (const queue of changes.available) {
      if (!this.paused.has(queue)) tell((listener) => listener.available?.(queue));
    }
    if (changes.scheduledAt.length > 0) this.armDueTimer(Math.min(...changes.scheduledAt));
  }

  private rowOrThrow(id: string): JobRow {
    const row = this.st.jobById.get(id);
    if (!row) throw errors.jobNotFound();
    return row;
  }

  /** Wakes up when the earliest scheduled job is due, to promote it without polling. */
  private armDueTimer(at: number | null): void {
    if (at === null || !this.running) return;
    if (this.dueTimer && this.dueTimer.at <= at) return;
    if (this.dueTimer) clearTimeout(this.dueTimer.handle);
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, at - this.options.clock.now()));
    const handle = setTimeout(() => {
      this.dueTimer = null;
      this.promoteDue();
    }, wait);
    handle.unref();
    this.dueTimer = { at, handle };
  }

  private promoteDue(): void {
    try {
      this.transact((ctx) => {
        for (const row of this.st.dueScheduled.all(ctx.now, SWEEP_BATCH)) {
          this.st.promote.run(row.id);
          ctx.changes.available.add(row.queue);
        }
      });
    } catch (error) {
      this.options.logger.error({ err: toError(error) }, 'promoting due jobs failed');
    }
    this.armDueTimer(this.st.earliestScheduled.get()?.run_at ?? null);
  }

  /** Periodic duties: expired leases (crashed workers), expired ttl, retention. */
  private sweep(): void {
    try {
      this.transact((ctx) => {
        for (const row of this.st.expiredLeases.all(ctx.now, SWEEP_BATCH)) writes.recoverCrashed(ctx, row);
        for (const row of this.st.expiredTtl.all(ctx.now, SWEEP_BATCH)) writes.finish(ctx, row, 'expire', { error: expiredError() });
      });
      this.promoteDue();
      const now = this.options.clock.now();
      // Retention needs no haste: every tenth sweep.
      if (now - this.lastRetentionAt >= 10 * (this.options.sweepIntervalMs ?? 1000)) {
        this.lastRetentionAt = now;
        this.purgeFinished(now).catch((error: unknown) => this.options.logger.error({ err: toError(error) }, 'retention purge failed'));
      }
    } catch (error) {
      this.options.logger.error({ err: toError(error) }, 'engine sweep failed');
    }
  }

  /** Deletes finished jobs past retention in small chunks, yielding between them so the engine never stalls. */
  private async purgeFinished(now: number): Promise<void> {
    for (const [state, cutoff] of retentionCutoffs(now, this.options.retention)) {
      for (;;) {
        if (!this.running) return;
        const deleted = this.transact(() => {
          const ids = this.st.finishedBefore.all(state, cutoff, RETENTION_CHUNK);
          for (const { id } of ids) writes.deleteJob(this.st, id);
          return ids.length;
        });
        if (deleted < RETENTION_CHUNK) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }
}
