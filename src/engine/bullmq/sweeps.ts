import type { SelectQueryBuilder } from 'kysely';
import type { Database } from '../../db/schema.js';
import { toError } from '../../utils/errors.js';
import { planExpire, planRecoverCrash } from '../changes.js';
import { purgeFinished } from '../retention.js';
import type { TicketDispatch } from './dispatch.js';
import type { Liveness } from './liveness.js';
import { DELETE_IF_EQUAL } from './scripts/deleteIfEqual.js';
import type { Signals } from './signals.js';
import type { InstanceState } from './state.js';
import { applyPlan, deleteJobs, lockWhere } from './store.js';
import { leaseInstance } from './tickets.js';
import type { PgTransactions } from './transactions.js';

type JobIdsQuery = SelectQueryBuilder<Database, 'jobs', { id: string }>;

const RECONCILE_PAGE = 1000;
const DEFAULT_RECONCILE_MS = 60_000;

/**
 * The BullMQ engine's periodic duties. In PostgreSQL: leases of crashed workers, expired ttl,
 * due jobs shown as queued, pauses re-read, retention. On Redis (apart, since BullMQ's
 * connection waits while Redis is away and the duties above must not): a Redis that lost its
 * data, instances that are gone, and reconciliation, which puts back on BullMQ the tickets of
 * waiting jobs it does not hold.
 */
export class Sweeper {
  private sweeping: Promise<void> | null = null;
  private redisWork: Promise<void> | null = null;
  private reconciling: Promise<number | null> | null = null;
  private sweepCount = 0;
  private lastReconcileAt = 0;

  constructor(
    private readonly state: InstanceState,
    private readonly transactions: PgTransactions,
    private readonly dispatch: TicketDispatch,
    private readonly liveness: Liveness,
    private readonly signals: Signals,
  ) {}

  /** One sweep at a time; a call during one waits for it. */
  sweep(): Promise<void> {
    this.sweeping ??= this.sweepOnce()
      .catch((error: unknown) => this.state.logger.error({ err: toError(error) }, 'engine sweep failed'))
      .finally(() => (this.sweeping = null));
    return this.sweeping;
  }

  /** Waits for the sweep under way, and at most `wait` for the Redis side (Redis may be away). */
  async settle(wait: (promise: Promise<unknown>) => Promise<unknown>): Promise<void> {
    await this.sweeping;
    await wait(Promise.allSettled([this.redisWork, this.reconciling]));
  }

  /** Waits for the Redis side of the sweep under way. */
  async redisSettled(): Promise<void> {
    await this.redisWork;
  }

  private async sweepOnce(): Promise<void> {
    if (!this.state.running) return;
    const now = this.state.now();
    await this.transactions.run(async (ctx) => {
      const expired = await lockWhere(ctx, (query) => query.where('state', '=', 'active').where('lease_expires_at', '<', ctx.now));
      for (const row of expired) await applyPlan(ctx, planRecoverCrash(row, ctx.now, ctx.maxCrashes));
      const stale = await lockWhere(ctx, (query) =>
        query.where('state', 'in', ['queued', 'scheduled']).where('expires_at', 'is not', null).where('expires_at', '<=', ctx.now),
      );
      for (const row of stale) await applyPlan(ctx, planExpire(row, ctx.now));
    });
    const { db } = this.state.options;
    // Listings show due jobs as queued, as in the embedded engine; their tickets are unchanged.
    await db.updateTable('jobs').set({ state: 'queued' }).where('state', '=', 'scheduled').where('run_at', '<=', now).execute();
    await this.rereadPauses();
    this.sweepCount += 1;
    if (this.sweepCount % 10 === 0) await this.purgeFinished(now);
    // The rest needs Redis and runs apart, one at a time: while Redis is away, leases and ttl are still looked after above.
    if (this.dispatch.ready && !this.redisWork) {
      this.redisWork = this.redisDuties(now)
        .catch((error: unknown) => this.state.logger.error({ err: toError(error) }, 'engine sweep (Redis side) failed'))
        .finally(() => (this.redisWork = null));
    }
  }

  /** A pause announced while this process could not hear it still takes effect, unless a newer one arrived meanwhile. */
  private async rereadPauses(): Promise<void> {
    const version = this.state.pausedVersion;
    const paused = await this.state.options.db.selectFrom('queues').select('name').where('paused', '=', 1).execute();
    if (version !== this.state.pausedVersion) return;
    this.state.paused.clear();
    for (const { name } of paused) this.state.paused.add(name);
  }

  private async redisDuties(now: number): Promise<void> {
    if (await this.liveness.checkEpoch()) {
      this.state.logger.warn('Redis lost its data (restart or failover): re-enqueueing waiting jobs from PostgreSQL');
      this.state.reconcileWanted = true;
    }
    await this.recoverGone();
    const periodic = now - this.lastReconcileAt >= (this.state.options.reconcileIntervalMs ?? DEFAULT_RECONCILE_MS);
    if (!this.state.reconcileWanted && !periodic) return;
    const wanted = this.state.reconcileWanted;
    this.state.reconcileWanted = false;
    this.lastReconcileAt = now;
    let outcome: number | null;
    try {
      outcome = await this.reconcile();
    } catch (error) {
      // Most likely Redis failing again, just when a pass is wanted: ask for it again.
      this.state.reconcileWanted = true;
      throw error;
    }
    // Another process reconciling now may have passed the tickets in question already: a wanted pass runs here, later.
    if (outcome === null && wanted) this.state.reconcileWanted = true;
  }

  /** The leases of instances that are gone are recovered at once, and the tickets they may have been taking are reconciled. */
  private async recoverGone(): Promise<void> {
    if (this.liveness.unsettled || !this.dispatch.ready) return;
    const gone = await this.liveness.gone();
    for (const instance of gone) {
      const recovered = await this.transactions.run(async (ctx) => {
        const held = await lockWhere(ctx, (query) => query.where('state', '=', 'active').where('lease_token', 'like', `${instance}.%`));
        for (const row of held) await applyPlan(ctx, planRecoverCrash(row, ctx.now, ctx.maxCrashes));
        return held.length;
      });
      this.state.logger.warn({ jobs: recovered, instance }, 'an engine instance is gone; recovered the jobs it held');
    }
    // It may have died while taking tickets: between taking and removing them, or before its lease committed.
    if (gone.size > 0) this.state.reconcileWanted = true;
  }

  /**
   * Checks every queued or scheduled job for its ticket and enqueues the missing ones. One
   * process at a time (a Redis lock); returns how many were enqueued, or null when another
   * process holds the lock.
   */
  reconcile(): Promise<number | null> {
    this.reconciling ??= this.reconcileOnce().finally(() => (this.reconciling = null));
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<number | null> {
    const { commands } = this.state.redis;
    const lock = this.state.key('reconcile-lock');
    if ((await commands.set(lock, this.state.instanceId, 'PX', 60_000, 'NX')) !== 'OK') return null;
    let enqueued = 0;
    try {
      // Heartbeats of the instances not (yet) judged gone; tickets locked by any other are orphans.
      const alive = await this.liveness.alive();
      const lockedByLiveInstance = (token: string) => alive.has(leaseInstance(token));
      for (let after = ''; ; ) {
        const page = await this.reconcilePage(after, lockedByLiveInstance);
        if (page === null) break;
        after = page.last;
        enqueued += page.enqueued;
      }
    } finally {
      await commands.eval(DELETE_IF_EQUAL, 1, lock, this.state.instanceId).catch(() => undefined);
    }
    if (enqueued > 0) this.state.logger.warn({ jobs: enqueued }, 're-enqueued waiting jobs BullMQ did not hold');
    return enqueued;
  }

  /** One page of waiting jobs after id `after`: their lost tickets are added again. Null past the last page. */
  private async reconcilePage(after: string, lockedByLiveInstance: (token: string) => boolean): Promise<{ last: string; enqueued: number } | null> {
    const rows = await this.state.options.db
      .selectFrom('jobs')
      .select(['id', 'queue', 'type', 'priority', 'run_at', 'last_seq'])
      .where('state', 'in', ['queued', 'scheduled'])
      .where('id', '>', after)
      .orderBy('id')
      .limit(RECONCILE_PAGE)
      .execute();
    if (rows.length === 0) return null;
    const missing = await this.dispatch.lost(
      rows.map((row) => ({ jobId: row.id, seq: row.last_seq, queue: row.queue, type: row.type, priority: row.priority, runAt: Number(row.run_at) })),
      lockedByLiveInstance,
    );
    if (missing.length > 0) {
      const now = this.state.now();
      await this.dispatch.add(missing, now);
      for (const queue of new Set(missing.filter((ticket) => ticket.runAt <= now).map((ticket) => ticket.queue))) this.signals.available(queue);
      this.transactions.scheduleWakeups(missing, now);
    }
    return { last: rows.at(-1)!.id, enqueued: missing.length };
  }

  /** Deletes finished jobs past retention (see purgeFinished). */
  private purgeFinished(now: number): Promise<void> {
    return purgeFinished(now, this.state.options.retention, () => this.state.running, (state, finishedBefore, limit) =>
      this.deleteFinished((query) => query.where('state', '=', state).where('finished_at', '<', finishedBefore), limit),
    );
  }

  /** Deletes up to `limit` jobs matching `where` (with their events and tags) in one transaction; returns how many. */
  deleteFinished(where: (query: JobIdsQuery) => JobIdsQuery, limit: number): Promise<number> {
    return this.transactions.run(async (ctx) => {
      const rows = await where(ctx.trx.selectFrom('jobs').select('id')).limit(limit).forUpdate().skipLocked().execute();
      await deleteJobs(ctx, rows.map((row) => row.id));
      return rows.length;
    });
  }
}
