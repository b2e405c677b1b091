import { randomUUID } from 'node:crypto';
import type SqliteDatabase from 'better-sqlite3';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../../db/schema.js';
import type { Clock } from '../../utils/clock.js';
import { errors, toError } from '../../utils/errors.js';
import { newId } from '../../utils/ids.js';
import {
  AfterCommit,
  checkDeletable,
  hasDedupKey,
  planClaim,
  planCompletion,
  planExpire,
  planFailure,
  planFinish,
  planManualRetry,
  planAppend,
  planRecoverCrash,
  planRelease,
  planSubmissions,
} from '../changes.js';
import { DEFAULT_MAX_CRASHES } from '../lifecycle.js';
import { Listeners } from '../listeners.js';
import { EngineBase } from '../engineBase.js';
import { rowToJob, type JobRow } from '../rows.js';
import { purgeFinished } from '../retention.js';
import { isSingletonRefusal, toAppError } from '../storageErrors.js';
import type {
  AddedJob,
  AttemptFailure,
  Claim,
  Engine,
  HandlerEvent,
  Job,
  NewJob,
  Outcome,
  RetentionPolicy,
} from '../types.js';
import { prepareStatements, type Statements } from './statements.js';
import { applyIfAny, applyPlan, dedupCandidates, deleteJob, type WriteContext } from './store.js';
import { Transactions } from './transactions.js';

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

const SWEEP_BATCH = 500;
const MAX_TIMER_MS = 3_600_000;

/**
 * The embedded engine: jobs in SQLite, dispatch in this process. Every change is a short
 * synchronous transaction (state and event rows together); completions, failures and handler
 * events arriving in the same tick share one transaction.
 */
export class EmbeddedEngine extends EngineBase implements Engine {
  readonly name = 'embedded';
  readonly capabilities = { multiProcess: false, pushesAvailability: true };
  private readonly st: Statements;
  private readonly paused: Set<string>;
  private readonly transactions: Transactions;
  private sweepTimer: NodeJS.Timeout | null = null;
  private dueTimer: { at: number; handle: NodeJS.Timeout } | null = null;
  private lastRetentionAt = 0;
  private running = false;

  constructor(private readonly options: EmbeddedEngineOptions) {
    const paused = new Set<string>();
    super(options.db, new Listeners(options.logger, paused));
    this.paused = paused;
    this.st = prepareStatements(options.sqlite);
    const context = { now: () => options.clock.now(), maxCrashes: options.maxCrashes ?? DEFAULT_MAX_CRASHES };
    this.transactions = new Transactions(options.sqlite, this.st, context, (after) => this.announce(after));
  }

  async start(): Promise<void> {
    for (const { name } of this.st.pausedQueues.all()) this.paused.add(name);
    // One process owns an embedded store: whatever is active now was left by a process that died.
    const orphans = this.transact((ctx) => {
      const rows = this.st.allActive.all();
      for (const row of rows) applyPlan(ctx, planRecoverCrash(row, ctx.now, ctx.maxCrashes));
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
    this.transactions.flush();
  }

  async addJobs(jobs: NewJob[]): Promise<AddedJob[]> {
    return this.transact((ctx) => {
      const candidates = jobs.filter(hasDedupKey).flatMap((job) => dedupCandidates(this.st, job));
      return planSubmissions(jobs, candidates, newId, ctx.now).map(({ row, plan, deduplicatedBy }): AddedJob => {
        if (plan) return { job: rowToJob(applyPlan(ctx, plan)), created: true };
        return { job: rowToJob(row), created: false, ...(deduplicatedBy ? { deduplicatedBy } : {}) };
      });
    });
  }

  async cancelJob(id: string): Promise<Job> {
    return this.transact((ctx) => rowToJob(applyPlan(ctx, planFinish(this.rowOrThrow(id), 'cancel', {}, ctx.now))));
  }

  async retryJob(id: string): Promise<Job> {
    return this.transact((ctx) => {
      const row = this.rowOrThrow(id);
      try {
        return rowToJob(applyPlan(ctx, planManualRetry(row, ctx.now)));
      } catch (error) {
        if (row.singleton_key === null) throw error;
        throw toAppError(error, this.st.liveJobBySingletonKey.get(row.owner_id, row.singleton_key)?.id ?? null);
      }
    });
  }

  async deleteJob(id: string): Promise<void> {
    this.transact(() => {
      checkDeletable(this.rowOrThrow(id));
      deleteJob(this.st, id);
    });
  }

  async claimJobs(request: { queue: string; types: string[]; limit: number; workerId: string; leaseMs: number }): Promise<Claim[]> {
    if (!this.running || this.paused.has(request.queue) || request.limit <= 0) return [];
    return this.transact((ctx) => {
      const claims: Claim[] = [];
      for (const type of request.types) {
        for (const row of this.st.nextClaimable.all(request.queue, type, request.limit - claims.length)) {
          // randomUUID draws from a cached entropy pool: a fresh randomBytes call per claim cost more than the claim's SQL.
          const { plan, claim } = planClaim(row, { token: randomUUID(), workerId: request.workerId, leaseMs: request.leaseMs }, ctx.now);
          applyPlan(ctx, plan);
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
    return this.transactions.batched((ctx) => {
      const { plan, outcome } = planCompletion(this.st.jobById.get(claim.jobId), claim.token, result, ctx.now);
      applyIfAny(ctx, plan);
      return outcome;
    });
  }

  failJob(claim: { jobId: string; token: string }, failure: AttemptFailure): Promise<Outcome> {
    return this.transactions.batched((ctx) => {
      const { plan, outcome } = planFailure(this.st.jobById.get(claim.jobId), claim.token, failure, ctx.now);
      applyIfAny(ctx, plan);
      return outcome;
    });
  }

  appendEvents(claim: { jobId: string; token: string }, events: HandlerEvent[]): Promise<boolean> {
    return this.transactions.batched((ctx) => {
      const plan = planAppend(this.st.jobById.get(claim.jobId), claim.token, events, ctx.now);
      applyIfAny(ctx, plan);
      return plan !== null;
    });
  }

  async releaseJobs(claims: { jobId: string; token: string }[]): Promise<void> {
    this.transactions.flush();
    this.transact((ctx) => {
      for (const claim of claims) applyIfAny(ctx, planRelease(this.st.jobById.get(claim.jobId), claim.token, ctx.now));
    });
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
    const after = new AfterCommit();
    after.available.add(name);
    this.announce(after);
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
            this.transactions.nested(ctx, (inner) => applyPlan(inner, planManualRetry(this.rowOrThrow(id), inner.now)));
            count += 1;
          } catch (error) {
            // Its singleton key is held by a live job: leave this one failed.
            if (!isSingletonRefusal(error)) throw error;
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
        for (const { id } of ids) deleteJob(this.st, id);
        count += ids.length;
      }
    });
  }

  private transact<T>(fn: (ctx: WriteContext) => T): T {
    return this.transactions.run(fn);
  }

  /** Tells listeners what a committed transaction changed, and arms the due timer for jobs that became scheduled. */
  private announce(after: AfterCommit): void {
    this.listeners.announce(after);
    const scheduled = after.runnable.filter((row) => row.state === 'scheduled').map((row) => row.run_at);
    if (scheduled.length > 0) this.armDueTimer(Math.min(...scheduled));
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
          ctx.after.available.add(row.queue);
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
        for (const row of this.st.expiredLeases.all(ctx.now, SWEEP_BATCH)) applyPlan(ctx, planRecoverCrash(row, ctx.now, ctx.maxCrashes));
        for (const row of this.st.expiredTtl.all(ctx.now, SWEEP_BATCH)) applyPlan(ctx, planExpire(row, ctx.now));
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

  /** Deletes finished jobs past retention (see purgeFinished). */
  private purgeFinished(now: number): Promise<void> {
    return purgeFinished(now, this.options.retention, () => this.running, (state, finishedBefore, limit) =>
      this.transact(() => {
        const ids = this.st.finishedBefore.all(state, finishedBefore, limit);
        for (const { id } of ids) deleteJob(this.st, id);
        return ids.length;
      }),
    );
  }
}
