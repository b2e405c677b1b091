import { closeRedis } from '../../config/redis.js';
import { sql } from 'kysely';
import { errors } from '../../utils/errors.js';
import { newId } from '../../utils/ids.js';
import {
  checkDeletable,
  planAppend,
  planClaim,
  planFailure,
  planFinish,
  planManualRetry,
  planRelease,
  planSubmissions,
  type Plan,
} from '../changes.js';
import { EngineBase } from '../engineBase.js';
import { rowToJob, type JobRow } from '../rows.js';
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
} from '../types.js';
import { Completions } from './completions.js';
import { TicketDispatch } from './dispatch.js';
import { toBullMq } from './guarded.js';
import { Liveness } from './liveness.js';
import { Signals } from './signals.js';
import { InstanceState, within, type BullMqEngineOptions } from './state.js';
import { applyActivations, applyIfAny, applyPlan, dedupCandidates, deleteJobs, lockRow, lockRows, singletonHolder, type PgWriteContext } from './store.js';
import { Sweeper } from './sweeps.js';
import { newLeaseToken, ticketOf, type Ticket } from './tickets.js';
import { PgTransactions } from './transactions.js';
import { Wakeups } from './wakeups.js';

export type { BullMqEngineOptions } from './state.js';

const SWEEP_BATCH = 500;
/** How long stop() waits for Redis-side work (Redis may be away) before it closes the connections anyway. */
const STOP_WAIT_MS = 2000;
/** A ticket may fire this early (clocks of Redis and this process differ) and still be honoured. */
const EARLY_TOLERANCE_MS = 1000;

/**
 * The distributed engine: job records in PostgreSQL (the source of truth), dispatch through
 * BullMQ on Redis. Submitting writes the row and its event, then puts a ticket on BullMQ; a
 * worker takes a ticket, removes it, and takes a lease on the row in one transaction with its
 * job.active event. Everything after that (leases, retries, crashes, cancellation) is planned on
 * the row by the shared transitions (engine/changes.ts), so this engine behaves like the embedded
 * one. This file holds the port's methods; transactions, signals, liveness and sweeps have their own.
 */
export class BullMqEngine extends EngineBase implements Engine {
  readonly name = 'bullmq';
  readonly capabilities = { multiProcess: true, pushesAvailability: true };
  private readonly state: InstanceState;
  private readonly dispatch: TicketDispatch;
  private readonly wakeups: Wakeups;
  private readonly signals: Signals;
  private readonly transactions: PgTransactions;
  private readonly completions: Completions;
  private readonly liveness: Liveness;
  private readonly sweeper: Sweeper;
  private sweepTimer: NodeJS.Timeout | null = null;
  private stopping: Promise<void> | null = null;

  constructor(private readonly options: BullMqEngineOptions) {
    const state = new InstanceState(options);
    super(options.db, state.listeners);
    this.state = state;
    this.dispatch = new TicketDispatch(options.redis.bull, options.prefix, options.logger);
    this.wakeups = new Wakeups(() => state.now(), (queue) => state.listeners.available(queue));
    this.signals = new Signals(state, this.wakeups);
    this.transactions = new PgTransactions(state, this.dispatch, this.signals, this.wakeups);
    this.completions = new Completions(options.db, () => state.now(), (after) => this.transactions.afterCommit(after));
    this.liveness = new Liveness(state);
    this.sweeper = new Sweeper(state, this.transactions, this.dispatch, this.liveness, this.signals);
    for (const client of Object.values(options.redis)) client.on('error', () => state.redisTrouble());
  }

  async start(): Promise<void> {
    const rows = await this.options.db.selectFrom('queues').select('name').where('paused', '=', 1).execute();
    for (const { name } of rows) this.state.paused.add(name);
    await this.signals.listen();
    await this.liveness.start();
    this.state.running = true;
    // Jobs held by instances that are gone (a process that stopped or died) go back before this one serves.
    await this.sweeper.sweep();
    await this.sweeper.redisSettled();
    this.sweepTimer = setInterval(() => void this.sweeper.sweep(), this.options.sweepIntervalMs ?? 1000);
    this.sweepTimer.unref();
  }

  /** Stops background duties, hands what this instance holds to the others, and closes its connections. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    this.state.running = false;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.liveness.stop();
    this.wakeups.stop();
    await this.completions.flush();
    // Redis-side work waits for Redis, which may be away: give it a moment, not forever.
    await this.sweeper.settle((work) => within(STOP_WAIT_MS, work));
    // Whatever this instance still holds is recovered at once by the others, not after lease expiry.
    await this.liveness.leave();
    await within(STOP_WAIT_MS, this.dispatch.close().catch(() => undefined));
    await Promise.all(Object.values(this.options.redis).map((client) => closeRedis(client)));
  }

  /**
   * Adds jobs in one transaction, deduplicated by the shared policy against stored jobs and
   * each other. Fails with JOBLINE_NOT_READY while Redis is away (rather than accept a job that
   * could not be dispatched), and retries when a concurrent submission took a key meanwhile.
   */
  async addJobs(jobs: NewJob[]): Promise<AddedJob[]> {
    if (!this.dispatch.ready) throw errors.notReady({ redis: 'unreachable' });
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.transactions.run(async (ctx) => {
          const planned = planSubmissions(jobs, await dedupCandidates(ctx, jobs), newId, ctx.now);
          for (const { plan } of planned) await applyIfAny(ctx, plan);
          return planned.map(({ row, plan, deduplicatedBy }): AddedJob =>
            plan ? { job: rowToJob(row), created: true } : { job: rowToJob(row), created: false, ...(deduplicatedBy ? { deduplicatedBy } : {}) },
          );
        });
      } catch (error) {
        // A concurrent submission took a unique key between our look and our insert: look again.
        if (!isSingletonRefusal(error) || attempt >= 3) throw error;
      }
    }
  }

  async cancelJob(id: string): Promise<Job> {
    let ticket: Ticket | null = null;
    const job = await this.transactions.run(async (ctx) => {
      const row = await this.rowOrThrow(ctx, id);
      if (row.state === 'queued' || row.state === 'scheduled') ticket = ticketOf(row);
      return rowToJob(await applyPlan(ctx, planFinish(row, 'cancel', {}, ctx.now)));
    });
    const removing: Ticket | null = ticket;
    // A ticket left behind is harmless: its job is no longer waiting, so whoever takes it drops it.
    if (removing) await toBullMq(this.state, this.dispatch, "removing a cancelled job's ticket", () => this.dispatch.remove(removing));
    return job;
  }

  async retryJob(id: string): Promise<Job> {
    try {
      return await this.transactions.run(async (ctx) => rowToJob(await applyPlan(ctx, planManualRetry(await this.rowOrThrow(ctx, id), ctx.now))));
    } catch (error) {
      if (!isSingletonRefusal(error)) throw error;
      const row = await this.options.db.selectFrom('jobs').select(['owner_id', 'singleton_key']).where('id', '=', id).executeTakeFirst();
      throw toAppError(error, row?.singleton_key == null ? null : await singletonHolder(this.options.db, row.owner_id, row.singleton_key));
    }
  }

  async deleteJob(id: string): Promise<void> {
    await this.transactions.run(async (ctx) => {
      checkDeletable(await this.rowOrThrow(ctx, id));
      await deleteJobs(ctx, [id]);
    });
  }

  /**
   * Takes up to `limit` tickets from BullMQ (removing them), then leases their rows in one
   * transaction. Returns the claims; stale tickets are dropped, early ones put back. When the
   * transaction fails the tickets are gone but the jobs still queued: the reconciler restores them.
   */
  async claimJobs(request: { queue: string; types: string[]; limit: number; workerId: string; leaseMs: number }): Promise<Claim[]> {
    const { state } = this;
    if (!state.running || state.paused.has(request.queue) || request.limit <= 0 || !this.dispatch.ready) return [];
    const taken: { jobId: string; seq: number; token: string }[] = [];
    for (const type of request.types) {
      const more = await this.dispatch.take(request.queue, type, request.limit - taken.length, () => newLeaseToken(state.instanceId));
      if (more.troubled) state.reconcileWanted = true;
      taken.push(...more.tickets);
      if (taken.length >= request.limit) break;
    }
    if (taken.length === 0) return [];
    const byId = new Map(taken.map((ticket) => [ticket.jobId, ticket]));
    return this.claimTaken(byId, request).catch((error: unknown) => {
      state.reconcileWanted = true;
      throw error;
    });
  }

  private claimTaken(byId: Map<string, { seq: number; token: string }>, request: { workerId: string; leaseMs: number }): Promise<Claim[]> {
    return this.transactions.run(async (ctx) => {
      const activations: Plan[] = [];
      const claims: Claim[] = [];
      for (const row of await lockRows(ctx, [...byId.keys()])) {
        const ticket = byId.get(row.id)!;
        // A stale ticket (the job ran, was cancelled or changed since) is simply dropped.
        if (row.last_seq !== ticket.seq || (row.state !== 'queued' && row.state !== 'scheduled')) continue;
        if (Number(row.run_at) > ctx.now + EARLY_TOLERANCE_MS && (row.expires_at === null || Number(row.expires_at) > ctx.now)) {
          ctx.after.runnable.push(row);
          continue;
        }
        const { plan, claim } = planClaim({ ...row, state: 'queued' }, { token: ticket.token, workerId: request.workerId, leaseMs: request.leaseMs }, ctx.now);
        if (!claim) await applyPlan(ctx, plan);
        else {
          activations.push(plan);
          claims.push(claim);
        }
      }
      await applyActivations(ctx, activations);
      return claims;
    });
  }

  async renewLeases(claims: { jobId: string; token: string }[], leaseMs: number): Promise<string[]> {
    if (claims.length === 0) return [];
    const until = this.state.now() + leaseMs;
    const values = sql.join(claims.map((claim) => sql`(${claim.jobId}, ${claim.token})`));
    const { rows } = await sql<{ id: string; token: string }>`
      update jobs as j set lease_expires_at = ${until}
      from (values ${values}) as v(id, token)
      where j.id = v.id and j.lease_token = v.token and j.state = 'active'
      returning j.id, v.token`.execute(this.options.db);
    // By job and token: a stale token for a job whose current lease is renewed too is still lost.
    const kept = new Set(rows.map((row) => `${row.id} ${row.token}`));
    return claims.filter((claim) => !kept.has(`${claim.jobId} ${claim.token}`)).map((claim) => claim.jobId);
  }

  /** Completions arriving together share one statement (see completions.ts). */
  completeJob(claim: { jobId: string; token: string }, result: unknown): Promise<Outcome> {
    return this.completions.complete(claim, result);
  }

  failJob(claim: { jobId: string; token: string }, failure: AttemptFailure): Promise<Outcome> {
    return this.transactions.run(async (ctx) => {
      const { plan, outcome } = planFailure(await lockRow(ctx, claim.jobId), claim.token, failure, ctx.now);
      await applyIfAny(ctx, plan);
      return outcome;
    });
  }

  appendEvents(claim: { jobId: string; token: string }, events: HandlerEvent[]): Promise<boolean> {
    return this.transactions.run(async (ctx) => {
      const plan = planAppend(await lockRow(ctx, claim.jobId), claim.token, events, ctx.now);
      await applyIfAny(ctx, plan);
      return plan !== null;
    });
  }

  async releaseJobs(claims: { jobId: string; token: string }[]): Promise<void> {
    await this.completions.flush();
    await this.transactions.run(async (ctx) => {
      for (const claim of claims) await applyIfAny(ctx, planRelease(await lockRow(ctx, claim.jobId), claim.token, ctx.now));
    });
  }

  async queuesWithWaitingJobs(): Promise<string[]> {
    // Queued only (the claim index covers exactly those rows); due jobs are promoted to queued by the sweep.
    const rows = await this.options.db.selectFrom('jobs').select('queue').distinct().where('state', '=', 'queued').execute();
    return rows.map((row) => row.queue);
  }

  async pauseQueue(name: string): Promise<void> {
    await this.setPaused(name, true);
  }

  async resumeQueue(name: string): Promise<void> {
    await this.setPaused(name, false);
    this.signals.available(name);
  }

  private async setPaused(name: string, paused: boolean): Promise<void> {
    const flag = paused ? 1 : 0;
    const now = this.state.now();
    await this.options.db
      .insertInto('queues')
      .values({ name, paused: flag, updated_at: now })
      .onConflict((conflict) => conflict.column('name').doUpdateSet({ paused: flag, updated_at: now }))
      .execute();
    this.state.setPaused(name, paused);
    this.signals.send({ kind: 'paused', queue: name, paused });
  }

  /** Retries every failed job of a queue, each in its own transaction; one whose singleton key is taken stays failed. */
  async retryFailed(queue: string): Promise<number> {
    let count = 0;
    const skipped = new Set<string>();
    for (;;) {
      const rows = await this.options.db.selectFrom('jobs').select('id').where('queue', '=', queue).where('state', '=', 'failed').limit(SWEEP_BATCH + skipped.size).execute();
      const ids = rows.filter(({ id }) => !skipped.has(id));
      if (ids.length === 0) return count;
      for (const { id } of ids) {
        try {
          await this.transactions.run(async (ctx) => {
            const row = await lockRow(ctx, id);
            if (row?.state === 'failed') await applyPlan(ctx, planManualRetry(row, ctx.now));
          });
          count += 1;
        } catch (error) {
          if (!isSingletonRefusal(error)) throw error;
          skipped.add(id);
        }
      }
    }
  }

  async cleanQueue(queue: string, state: 'completed' | 'failed' | 'cancelled', finishedBefore: number | null): Promise<number> {
    let count = 0;
    for (;;) {
      const deleted = await this.sweeper.deleteFinished(
        (query) => query.where('queue', '=', queue).where('state', '=', state).$if(finishedBefore !== null, (inner) => inner.where('finished_at', '<', finishedBefore!)),
        SWEEP_BATCH,
      );
      count += deleted;
      if (deleted < SWEEP_BATCH) return count;
    }
  }

  /**
   * Checks every queued or scheduled job for its ticket and enqueues the missing ones (see
   * Sweeper.reconcile); null when another process is reconciling.
   */
  reconcile(): Promise<number | null> {
    return this.sweeper.reconcile();
  }

  private async rowOrThrow(ctx: PgWriteContext, id: string): Promise<JobRow> {
    const row = await lockRow(ctx, id);
    if (!row) throw errors.jobNotFound();
    return row;
  }
}
