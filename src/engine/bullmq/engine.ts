import type { Redis } from 'ioredis';
import { closeRedis } from '../../config/redis.js';
import { sql, type Kysely, type SelectQueryBuilder } from 'kysely';
import type { Logger } from 'pino';
import { isUniqueViolation } from '../../db/errors.js';
import type { Database } from '../../db/schema.js';
import type { Clock } from '../../utils/clock.js';
import { errors, toError } from '../../utils/errors.js';
import { newId, randomToken } from '../../utils/ids.js';
import { DEFAULT_MAX_CRASHES, retentionCutoffs } from '../lifecycle.js';
import { JobRecords, rowToJob, type JobRow } from '../records.js';
import { TransitionError } from '../transitions.js';
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
import { DELETE_IF_EQUAL, TicketDispatch } from './dispatch.js';
import { Wakeups } from './wakeups.js';
import * as writes from './writes.js';
import { PgChanges, ticketOf, type PgWriteContext, type Ticket } from './writes.js';

export interface BullMqEngineOptions {
  /** PostgreSQL: the records, the source of truth. */
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  retention: RetentionPolicy;
  /** Prefix of every Redis key and channel. */
  prefix: string;
  /** Redis connections the engine owns and closes: BullMQ's (no command deadline), request-time commands, and a subscriber. */
  redis: { bull: Redis; commands: Redis; subscriber: Redis };
  maxCrashes?: number;
  sweepIntervalMs?: number;
  /** How often every waiting job's ticket is checked (a process may have died between commit and enqueue). */
  reconcileIntervalMs?: number;
}

type JobsQuery = SelectQueryBuilder<Database, 'jobs', JobRow>;
type JobIdsQuery = SelectQueryBuilder<Database, 'jobs', { id: string }>;

/** What engine instances tell each other over pub/sub. */
type Signal =
  | { kind: 'available'; queue: string }
  | { kind: 'due'; queue: string; at: number }
  | { kind: 'cancelled'; jobId: string }
  | { kind: 'paused'; queue: string; paused: boolean };

const SWEEP_BATCH = 500;
const RECONCILE_PAGE = 1000;
const RETENTION_CHUNK = 100;
const HEARTBEAT_MS = 1000;
/** An instance whose last heartbeat is this old is gone: its leases are recovered without waiting for them to expire. */
const HEARTBEAT_TTL_MS = 5000;
/** Heartbeats: a sorted set of instance ids scored by Redis' clock (ms). */
const HEARTBEAT_SCRIPT = `
local time = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return 1
`;
const STALE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
`;
const DEFAULT_RECONCILE_MS = 60_000;
/** How long the engine waits on a BullMQ call after a commit before it moves on and leaves the call to the reconciler. */
const BULL_CALL_MS = 2000;
/** How long stop() waits for Redis-side work (Redis may be away) before it closes the connections anyway. */
const STOP_WAIT_MS = 2000;
/** Creates the epoch key if missing; answers what it held before (nil: it was missing). Any Redis version. */
const EPOCH_SCRIPT = `
local previous = redis.call('GET', KEYS[1])
if not previous then redis.call('SET', KEYS[1], ARGV[1]) end
return previous
`;
/** A ticket may fire this early (clocks of Redis and this process differ) and still be honoured. */
const EARLY_TOLERANCE_MS = 1000;

/**
 * The distributed engine: job records in PostgreSQL (the source of truth), dispatch through
 * BullMQ on Redis. Submitting writes the row and its event, then puts a ticket on BullMQ; a
 * worker takes a ticket, removes it, and takes a lease on the row in one transaction with its
 * job.active event. Everything after that (leases, retries, crashes, cancellation) is decided on
 * the row with the shared lifecycle rules, so this engine behaves like the embedded one. Engine
 * instances in other processes hear of new work, cancellations and pauses over pub/sub.
 */
export class BullMqEngine implements Engine {
  readonly name = 'bullmq';
  readonly capabilities = { multiProcess: true, pushesAvailability: true };
  private readonly instanceId = randomToken(8);
  private readonly records: JobRecords;
  private readonly dispatch: TicketDispatch;
  private readonly listeners = new Set<EngineListener>();
  private readonly paused = new Set<string>();
  /** Counts pause changes made or heard, so a sweep's re-read never overwrites a newer one. */
  private pausedVersion = 0;
  private readonly maxCrashes: number;
  private readonly sweepIntervalMs: number;
  private readonly channel: string;
  private readonly wakeups: Wakeups;
  private completions: { jobId: string; token: string; result: unknown; resolve: (outcome: Outcome) => void; reject: (error: Error) => void }[] = [];
  private completing: Promise<void> | null = null;
  private timers: NodeJS.Timeout[] = [];
  private sweeping: Promise<void> | null = null;
  /** The sweep's Redis duties, which run apart: BullMQ's connection waits while Redis is away, leases and ttl must not. */
  private redisWork: Promise<void> | null = null;
  /** This instance's commands connection, as Redis numbers it (CLIENT ID): others ask Redis whether it is still connected. */
  private clientId: string | null = null;
  private reconciling: Promise<number | null> | null = null;
  private sweepCount = 0;
  private lastReconcileAt = 0;
  /** Tickets may be missing now (an enqueue failed, an instance died, Redis lost its data): reconcile at the next sweep. */
  private reconcileWanted = true;
  /** When Redis last failed us; instances are not judged dead by missing heartbeats soon after. */
  private lastRedisTroubleAt = 0;
  /** The Redis data set this instance knows (see checkRedisEpoch). */
  private knownEpoch: string | null = null;
  private running = false;
  private stopping: Promise<void> | null = null;

  constructor(private readonly options: BullMqEngineOptions) {
    this.records = new JobRecords(options.db);
    this.dispatch = new TicketDispatch(options.redis.bull, options.prefix, options.logger);
    this.maxCrashes = options.maxCrashes ?? DEFAULT_MAX_CRASHES;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 1000;
    this.channel = `${options.prefix}engine:signals`;
    this.wakeups = new Wakeups(() => options.clock.now(), (queue) => this.announceAvailable(queue));
    const troubled = () => (this.lastRedisTroubleAt = options.clock.now());
    for (const client of Object.values(options.redis)) client.on('error', troubled);
  }

  private get redis() {
    return this.options.redis;
  }

  private key(name: string): string {
    return `${this.options.prefix}engine:${name}`;
  }

  async start(): Promise<void> {
    const rows = await this.options.db.selectFrom('queues').select('name').where('paused', '=', 1).execute();
    for (const { name } of rows) this.paused.add(name);
    this.redis.subscriber.on('message', (channel: string, text: string) => {
      if (channel === this.channel) this.receive(text);
    });
    await this.redis.subscriber.subscribe(this.channel);
    // Each connection gets its own id: forget the old one as soon as it closes, learn the new one when ready.
    this.redis.commands.on('close', () => (this.clientId = null));
    this.redis.commands.on('ready', () => void this.learnClientId());
    await this.learnClientId();
    await this.heartbeat();
    this.running = true;
    // Jobs held by instances that are gone (a process that stopped or died) go back before this one serves.
    await this.sweep();
    await this.redisWork;
    this.timers.push(setInterval(() => void this.heartbeat(), HEARTBEAT_MS));
    this.timers.push(setInterval(() => void this.sweep(), this.sweepIntervalMs));
    for (const timer of this.timers) timer.unref();
  }

  /** Stops background duties, hands what this instance holds to the others, and closes its connections. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    this.running = false;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    this.wakeups.stop();
    await this.flushCompletions();
    await this.sweeping;
    // Redis-side work waits for Redis, which may be away: give it a moment, not forever.
    await within(STOP_WAIT_MS, Promise.allSettled([this.redisWork, this.reconciling]));
    // Whatever this instance still holds is recovered at once by the others, not after lease expiry.
    await this.redis.commands
      .multi()
      .zrem(this.key('instances'), this.instanceId)
      .hdel(this.key('instance-clients'), this.instanceId)
      .exec()
      .catch(() => undefined);
    await within(STOP_WAIT_MS, this.dispatch.close().catch(() => undefined));
    await Promise.all(Object.values(this.redis).map((client) => closeRedis(client)));
  }

  subscribe(listener: EngineListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async addJobs(jobs: NewJob[]): Promise<AddedJob[]> {
    // Refuse rather than accept a job that could not be dispatched until Redis returns.
    if (!this.dispatch.ready) throw errors.notReady({ redis: 'unreachable' });
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.transact((ctx) => this.insertNew(ctx, jobs));
      } catch (error) {
        // A concurrent submission took a unique key between our look and our insert: look again.
        if (!isUniqueViolation(error) || attempt >= 3) throw error;
      }
    }
  }

  private async insertNew(ctx: PgWriteContext, jobs: NewJob[]): Promise<AddedJob[]> {
    // Each job is an earlier one (stored, or new in this batch) or a new one, by position in `fresh`.
    type Slot = { found: AddedJob } | { fresh: number; by?: AddedJob['deduplicatedBy'] };
    const slots: Slot[] = [];
    const fresh: { id: string; job: NewJob }[] = [];
    const inBatch = new Map<string, number>();
    for (const job of jobs) {
      const keys: [string, NonNullable<AddedJob['deduplicatedBy']>][] = [];
      if (job.scheduleId !== null && job.fireAt != null) keys.push([`f:${job.scheduleId}:${job.fireAt}`, 'fireTime']);
      if (job.idempotencyKey !== null) keys.push([`i:${job.ownerId}:${job.idempotencyKey}`, 'idempotencyKey']);
      if (job.singletonKey !== null) keys.push([`s:${job.ownerId}:${job.singletonKey}`, 'singletonKey']);
      const earlier = keys.find(([key]) => inBatch.has(key));
      if (earlier) {
        slots.push({ fresh: inBatch.get(earlier[0])!, by: earlier[1] });
        continue;
      }
      const existing = keys.length > 0 ? await this.existingFor(ctx, job) : null;
      if (existing) {
        slots.push({ found: existing });
        continue;
      }
      for (const [key] of keys) inBatch.set(key, fresh.length);
      slots.push({ fresh: fresh.length });
      fresh.push({ id: newId(), job });
    }
    const rows = await writes.insertJobs(ctx, fresh);
    return slots.map((slot): AddedJob => {
      if ('found' in slot) return slot.found;
      const job = rowToJob(rows[slot.fresh]!);
      return slot.by ? { job, created: false, deduplicatedBy: slot.by } : { job, created: true };
    });
  }

  private async existingFor(ctx: PgWriteContext, job: NewJob): Promise<AddedJob | null> {
    const jobs = ctx.trx.selectFrom('jobs').selectAll();
    if (job.scheduleId !== null && job.fireAt != null) {
      const row = await jobs.where('schedule_id', '=', job.scheduleId).where('fire_at', '=', job.fireAt).executeTakeFirst();
      if (row) return { job: rowToJob(row), created: false, deduplicatedBy: 'fireTime' };
    }
    if (job.idempotencyKey !== null) {
      const row = await jobs.where('owner_id', '=', job.ownerId).where('idempotency_key', '=', job.idempotencyKey).executeTakeFirst();
      if (row) return { job: rowToJob(row), created: false, deduplicatedBy: 'idempotencyKey' };
    }
    if (job.singletonKey !== null) {
      const row = await jobs
        .where('owner_id', '=', job.ownerId)
        .where('singleton_key', '=', job.singletonKey)
        .where('state', 'in', ['queued', 'scheduled', 'active'])
        .executeTakeFirst();
      if (row) return { job: rowToJob(row), created: false, deduplicatedBy: 'singletonKey' };
    }
    return null;
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
    let ticket: Ticket | null = null;
    const job = await this.transact(async (ctx) => {
      const row = await this.rowOrThrow(ctx, id);
      if (row.state === 'queued' || row.state === 'scheduled') ticket = ticketOf(row);
      return rowToJob(await writes.finish(ctx, row, 'cancel', {}));
    });
    const removing: Ticket | null = ticket;
    // A ticket left behind is harmless: its job is no longer waiting, so whoever takes it drops it.
    if (removing) await this.toBullMq('removing a cancelled job\'s ticket', () => this.dispatch.remove(removing));
    return job;
  }

  async retryJob(id: string): Promise<Job> {
    try {
      return await this.transact(async (ctx) => rowToJob(await writes.manualRetry(ctx, await this.rowOrThrow(ctx, id))));
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      const row = await this.options.db.selectFrom('jobs').select(['owner_id', 'singleton_key']).where('id', '=', id).executeTakeFirst();
      const holder =
        row?.singleton_key == null
          ? undefined
          : await this.options.db
              .selectFrom('jobs')
              .select('id')
              .where('owner_id', '=', row.owner_id)
              .where('singleton_key', '=', row.singleton_key)
              .where('state', 'in', ['queued', 'scheduled', 'active'])
              .executeTakeFirst();
      throw errors.singletonTaken(holder?.id ?? '');
    }
  }

  async deleteJob(id: string): Promise<void> {
    await this.transact(async (ctx) => {
      const row = await this.rowOrThrow(ctx, id);
      if (row.state !== 'completed' && row.state !== 'failed' && row.state !== 'cancelled') {
        throw errors.jobStateConflict(`Only finished jobs can be deleted; this one is ${row.state}. Cancel it first.`);
      }
      await writes.deleteJob(ctx, id);
    });
  }

  async claimJobs(request: { queue: string; types: string[]; limit: number; workerId: string; leaseMs: number }): Promise<Claim[]> {
    if (!this.running || this.paused.has(request.queue) || request.limit <= 0 || !this.dispatch.ready) return [];
    const taken: { jobId: string; seq: number; token: string }[] = [];
    for (const type of request.types) {
      const more = await this.dispatch.take(request.queue, type, request.limit - taken.length, () => writes.newLeaseToken(this.instanceId));
      if (more.troubled) this.reconcileWanted = true;
      taken.push(...more.tickets);
      if (taken.length >= request.limit) break;
    }
    if (taken.length === 0) return [];
    const byId = new Map(taken.map((ticket) => [ticket.jobId, ticket]));
    return this.claimTaken(byId, request).catch((error: unknown) => {
      // The tickets are gone from BullMQ but the jobs are still queued: put them back soon.
      this.reconcileWanted = true;
      throw error;
    });
  }

  private claimTaken(byId: Map<string, { seq: number; token: string }>, request: { workerId: string; leaseMs: number }): Promise<Claim[]> {
    return this.transact(async (ctx) => {
      const runnable: { row: JobRow; token: string }[] = [];
      for (const row of await writes.lockRows(ctx, [...byId.keys()])) {
        const ticket = byId.get(row.id)!;
        // A stale ticket (the job ran, was cancelled or changed since) is simply dropped.
        if (row.last_seq !== ticket.seq || (row.state !== 'queued' && row.state !== 'scheduled')) continue;
        if (row.expires_at !== null && Number(row.expires_at) <= ctx.now) {
          await writes.expire(ctx, row);
          continue;
        }
        if (Number(row.run_at) > ctx.now + EARLY_TOLERANCE_MS) {
          ctx.changes.tickets.push(ticketOf(row));
          continue;
        }
        runnable.push({ row: { ...row, state: 'queued' }, token: ticket.token });
      }
      return writes.activateRows(ctx, runnable, request.workerId, request.leaseMs);
    });
  }

  async renewLeases(claims: { jobId: string; token: string }[], leaseMs: number): Promise<string[]> {
    if (claims.length === 0) return [];
    const until = this.options.clock.now() + leaseMs;
    const values = sql.join(claims.map((claim) => sql`(${claim.jobId}, ${claim.token})`));
    const { rows } = await sql<{ id: string }>`
      update jobs as j set lease_expires_at = ${until}
      from (values ${values}) as v(id, token)
      where j.id = v.id and j.lease_token = v.token and j.state = 'active'
      returning j.id`.execute(this.options.db);
    const kept = new Set(rows.map((row) => row.id));
    return claims.filter((claim) => !kept.has(claim.jobId)).map((claim) => claim.jobId);
  }

  /** Completions arriving together share one statement. */
  completeJob(claim: { jobId: string; token: string }, result: unknown): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      this.completions.push({ ...claim, result, resolve, reject });
      if (this.completions.length === 1 && !this.completing) setImmediate(() => void this.flushCompletions());
    });
  }

  private async flushCompletions(): Promise<void> {
    while (this.completing) await this.completing;
    const batch = this.completions;
    if (batch.length === 0) return;
    this.completions = [];
    this.completing = (async () => {
      try {
        const { outcomes, events } = await writes.completeMany(this.options.db, this.options.clock.now(), batch);
        const changes = new PgChanges();
        changes.events.push(...events);
        await this.afterCommit(changes);
        batch.forEach((item, index) => item.resolve(outcomes[index]!));
      } catch (error) {
        for (const item of batch) item.reject(toError(error));
      }
    })();
    await this.completing;
    this.completing = null;
    if (this.completions.length > 0) await this.flushCompletions();
  }

  failJob(claim: { jobId: string; token: string }, failure: AttemptFailure): Promise<Outcome> {
    return this.transact((ctx) => writes.fail(ctx, claim.jobId, claim.token, failure));
  }

  appendEvents(claim: { jobId: string; token: string }, events: HandlerEvent[]): Promise<boolean> {
    return this.transact((ctx) => writes.appendHandlerEvents(ctx, claim.jobId, claim.token, events));
  }

  async releaseJobs(claims: { jobId: string; token: string }[]): Promise<void> {
    await this.flushCompletions();
    await this.transact(async (ctx) => {
      for (const claim of claims) await writes.release(ctx, claim.jobId, claim.token);
    });
  }

  listQueues(): Promise<QueueInfo[]> {
    return this.records.queues();
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
    this.announceAvailable(name);
    this.signal({ kind: 'available', queue: name });
  }

  private async setPaused(name: string, paused: boolean): Promise<void> {
    await this.options.db
      .insertInto('queues')
      .values({ name, paused: paused ? 1 : 0, updated_at: this.options.clock.now() })
      .onConflict((conflict) => conflict.column('name').doUpdateSet({ paused: paused ? 1 : 0, updated_at: this.options.clock.now() }))
      .execute();
    this.pausedVersion += 1;
    if (paused) this.paused.add(name);
    else this.paused.delete(name);
    this.signal({ kind: 'paused', queue: name, paused });
  }

  async retryFailed(queue: string): Promise<number> {
    let count = 0;
    const skipped = new Set<string>();
    for (;;) {
      const ids = (
        await this.options.db
          .selectFrom('jobs')
          .select('id')
          .where('queue', '=', queue)
          .where('state', '=', 'failed')
          .limit(SWEEP_BATCH + skipped.size)
          .execute()
      ).filter(({ id }) => !skipped.has(id));
      if (ids.length === 0) return count;
      for (const { id } of ids) {
        try {
          await this.transact(async (ctx) => {
            const row = await writes.lockRow(ctx, id);
            if (row?.state === 'failed') await writes.manualRetry(ctx, row);
          });
          count += 1;
        } catch (error) {
          // Its singleton key is held by a live job: leave this one failed.
          if (!isUniqueViolation(error)) throw error;
          skipped.add(id);
        }
      }
    }
  }

  async cleanQueue(queue: string, state: 'completed' | 'failed' | 'cancelled', finishedBefore: number | null): Promise<number> {
    let count = 0;
    for (;;) {
      const deleted = await this.deleteFinished(
        (query) => query.where('queue', '=', queue).where('state', '=', state).$if(finishedBefore !== null, (inner) => inner.where('finished_at', '<', finishedBefore!)),
        SWEEP_BATCH,
      );
      count += deleted;
      if (deleted < SWEEP_BATCH) return count;
    }
  }

  /** Deletes up to `limit` jobs matching `where` (with their events and tags) in one transaction; returns how many. */
  private deleteFinished(where: (query: JobIdsQuery) => JobIdsQuery, limit: number): Promise<number> {
    return this.transact(async (ctx) => {
      const rows = await where(ctx.trx.selectFrom('jobs').select('id')).limit(limit).forUpdate().skipLocked().execute();
      await this.deleteMany(ctx, rows.map((row) => row.id));
      return rows.length;
    });
  }

  private async deleteMany(ctx: PgWriteContext, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await ctx.trx.deleteFrom('job_events').where('job_id', 'in', ids).execute();
    await ctx.trx.deleteFrom('job_tags').where('job_id', 'in', ids).execute();
    await ctx.trx.deleteFrom('jobs').where('id', 'in', ids).execute();
  }

  private async rowOrThrow(ctx: PgWriteContext, id: string): Promise<JobRow> {
    const row = await writes.lockRow(ctx, id);
    if (!row) throw errors.jobNotFound();
    return row;
  }

  /**
   * Runs `fn` in one transaction; its event rows are inserted together, last.
   * After the commit: tickets go to BullMQ, listeners and other instances hear what changed.
   */
  private async transact<T>(fn: (ctx: PgWriteContext) => Promise<T>): Promise<T> {
    let changes = new PgChanges();
    let result: T;
    try {
      result = await this.options.db.transaction().execute(async (trx) => {
        changes = new PgChanges();
        const ctx: PgWriteContext = { trx, now: this.options.clock.now(), changes, maxCrashes: this.maxCrashes, eventRows: [] };
        const value = await fn(ctx);
        await writes.insertEventRows(ctx);
        return value;
      });
    } catch (error) {
      if (error instanceof TransitionError) throw errors.jobStateConflict(error.message);
      throw error;
    }
    await this.afterCommit(changes);
    return result;
  }

  private async afterCommit(changes: PgChanges): Promise<void> {
    this.tell((listener) => changes.events.length > 0 && listener.events?.(changes.events));
    if (changes.tickets.length > 0) {
      const now = this.options.clock.now();
      const tickets = changes.tickets;
      // The rows are committed: should BullMQ not take the tickets now, the reconciler puts them there once it can.
      await this.toBullMq(`enqueueing ${tickets.length} job(s)`, () => this.dispatch.add(tickets, now));
      this.scheduleWakeups(tickets, now);
    }
    for (const queue of changes.available) {
      this.announceAvailable(queue);
      this.signal({ kind: 'available', queue });
    }
    for (const jobId of changes.cancelledActive) {
      this.tell((listener) => listener.cancelled?.(jobId));
      this.signal({ kind: 'cancelled', jobId });
    }
  }

  /**
   * A BullMQ call made after a commit. BullMQ's connection holds commands while Redis is away, so
   * the engine never waits on one for long: when Redis is away, or the call fails or takes more
   * than BULL_CALL_MS, the reconciler is asked to set things right from PostgreSQL. (A call that
   * goes through late does no harm: tickets are idempotent, and a stale one is dropped when taken.)
   */
  private async toBullMq(what: string, call: () => Promise<unknown>): Promise<void> {
    if (!this.dispatch.ready) {
      this.reconcileWanted = true;
      return;
    }
    const pending = call().then(() => true);
    pending.catch(() => undefined);
    try {
      if (!(await within(BULL_CALL_MS, pending))) {
        this.options.logger.warn(`${what} on BullMQ is taking long; the reconciler will see to it`);
        this.reconcileWanted = true;
      }
    } catch (error) {
      this.options.logger.warn({ err: toError(error) }, `${what} on BullMQ failed; the reconciler will see to it`);
      this.reconcileWanted = true;
    }
  }

  /** Calls every listener; a failing one is logged and the others still hear. */
  private tell(call: (listener: EngineListener) => unknown): void {
    for (const listener of this.listeners) {
      try {
        call(listener);
      } catch (error) {
        this.options.logger.error({ err: toError(error) }, 'an engine listener failed');
      }
    }
  }

  private announceAvailable(queue: string): void {
    if (!this.paused.has(queue)) this.tell((listener) => listener.available?.(queue));
  }

  /** Wakes workers here, and in every process, when delayed tickets come due (one signal per queue and time bucket). */
  private scheduleWakeups(tickets: Ticket[], now: number): void {
    for (const ticket of tickets) {
      if (ticket.runAt <= now) continue;
      const at = this.wakeups.add(ticket.queue, ticket.runAt);
      if (at !== null) this.signal({ kind: 'due', queue: ticket.queue, at });
    }
  }

  private signal(signal: Signal): void {
    if (!this.running) return;
    this.redis.commands.publish(this.channel, JSON.stringify({ ...signal, from: this.instanceId })).catch((error: unknown) => {
      this.options.logger.debug({ err: toError(error) }, 'publishing an engine signal failed');
    });
  }

  private receive(text: string): void {
    let signal: Signal & { from?: string };
    try {
      signal = JSON.parse(text) as Signal & { from?: string };
    } catch {
      return;
    }
    if (signal.from === this.instanceId || !this.running) return;
    if (signal.kind === 'available') this.announceAvailable(signal.queue);
    else if (signal.kind === 'due') this.wakeups.add(signal.queue, signal.at);
    else if (signal.kind === 'cancelled') this.tell((listener) => listener.cancelled?.(signal.jobId));
    else if (signal.kind === 'paused') {
      this.pausedVersion += 1;
      if (signal.paused) this.paused.add(signal.queue);
      else this.paused.delete(signal.queue);
    }
  }

  /** Records this instance as alive, at Redis' own time (so clocks of different hosts do not matter), with its connection's id. */
  private async heartbeat(): Promise<void> {
    try {
      await this.redis.commands.eval(HEARTBEAT_SCRIPT, 2, this.key('instances'), this.key('instance-clients'), this.instanceId, this.clientId ?? '');
    } catch {
      this.lastRedisTroubleAt = this.options.clock.now();
    }
  }

  /** Each (re)connection gets a new id from Redis. */
  private async learnClientId(): Promise<void> {
    try {
      this.clientId = String(await this.redis.commands.client('ID'));
    } catch {
      this.lastRedisTroubleAt = this.options.clock.now();
    }
  }

  /** Periodic duties: leases of crashed workers, expired ttl, due jobs, lost tickets, retention. */
  private sweep(): Promise<void> {
    this.sweeping ??= this.sweepOnce()
      .catch((error: unknown) => this.options.logger.error({ err: toError(error) }, 'engine sweep failed'))
      .finally(() => (this.sweeping = null));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    if (!this.running) return;
    const now = this.options.clock.now();
    await this.transact(async (ctx) => {
      const expired = await this.lockWhere(ctx, (query) => query.where('state', '=', 'active').where('lease_expires_at', '<', ctx.now));
      for (const row of expired) await writes.recoverCrashed(ctx, row);
      const stale = await this.lockWhere(ctx, (query) =>
        query.where('state', 'in', ['queued', 'scheduled']).where('expires_at', 'is not', null).where('expires_at', '<=', ctx.now),
      );
      for (const row of stale) await writes.expire(ctx, row);
    });
    // Listings show due jobs as queued, as in the embedded engine; their tickets are unchanged.
    await this.options.db.updateTable('jobs').set({ state: 'queued' }).where('state', '=', 'scheduled').where('run_at', '<=', now).execute();
    // A pause announced while this process could not hear it still takes effect.
    const version = this.pausedVersion;
    const paused = await this.options.db.selectFrom('queues').select('name').where('paused', '=', 1).execute();
    // Unless a pause or resume arrived meanwhile (it is newer than what was read).
    if (version === this.pausedVersion) {
      this.paused.clear();
      for (const { name } of paused) this.paused.add(name);
    }
    this.sweepCount += 1;
    if (this.sweepCount % 10 === 0) await this.purgeFinished(now);
    // The rest needs Redis and runs apart, one at a time: while Redis is away, leases and ttl are still looked after above.
    if (this.dispatch.ready && !this.redisWork) {
      this.redisWork = this.redisDuties(now)
        .catch((error: unknown) => this.options.logger.error({ err: toError(error) }, 'engine sweep (Redis side) failed'))
        .finally(() => (this.redisWork = null));
    }
  }

  private async redisDuties(now: number): Promise<void> {
    await this.checkRedisEpoch();
    await this.recoverOrphans(this.options.clock.now());
    const periodic = now - this.lastReconcileAt >= (this.options.reconcileIntervalMs ?? DEFAULT_RECONCILE_MS);
    if (!this.reconcileWanted && !periodic) return;
    const wanted = this.reconcileWanted;
    this.reconcileWanted = false;
    this.lastReconcileAt = now;
    let outcome: number | null;
    try {
      outcome = await this.reconcile();
    } catch (error) {
      // Most likely Redis failing again, just when a pass is wanted: ask for it again.
      this.reconcileWanted = true;
      throw error;
    }
    // Another process reconciling now may have passed the tickets in question already: a wanted pass runs here, later.
    if (outcome === null && wanted) this.reconcileWanted = true;
  }

  /** Locks up to a batch of matching rows; several processes sweep, and each takes rows no other sweep holds. */
  private lockWhere(ctx: PgWriteContext, where: (query: JobsQuery) => JobsQuery): Promise<JobRow[]> {
    return where(ctx.trx.selectFrom('jobs').selectAll()).orderBy('id').limit(SWEEP_BATCH).forUpdate().skipLocked().execute();
  }

  /**
   * Engine instances that stopped or died: those whose heartbeat is older than the TTL (the
   * sweep that removes one from the set handles it), and those holding leases without any
   * heartbeat (gone before a Redis restart). Their leases are recovered at once, and the
   * tickets they may have been taking are reconciled.
   */
  private async recoverOrphans(now: number): Promise<void> {
    if (now - this.lastRedisTroubleAt < 2 * HEARTBEAT_TTL_MS || !this.dispatch.ready) return;
    const instances = this.key('instances');
    const stale = (await this.redis.commands.eval(STALE_SCRIPT, 1, instances, HEARTBEAT_TTL_MS)) as string[];
    const gone = new Set<string>();
    for (const instance of stale) {
      // Still connected to Redis: alive but not heartbeating (a blocked event loop, a long pause). Its jobs
      // wait for their leases to expire, so nothing runs twice while it may still be running them.
      if (await this.stillConnected(instance)) continue;
      if ((await this.redis.commands.zrem(instances, instance)) === 1) {
        await this.redis.commands.hdel(this.key('instance-clients'), instance);
        gone.add(instance);
      }
    }
    const { rows } = await sql<{ instance: string }>`
      select distinct split_part(lease_token, '.', 1) as instance from jobs where state = 'active' and lease_token is not null`.execute(this.options.db);
    const holders = rows.map((row) => row.instance).filter((instance) => instance !== this.instanceId && instance !== '' && !gone.has(instance));
    const scores = holders.length > 0 ? await this.redis.commands.zmscore(instances, ...holders) : [];
    holders.forEach((instance, index) => {
      if (scores[index] === null) gone.add(instance);
    });
    for (const instance of gone) {
      const recovered = await this.transact(async (ctx) => {
        const held = await this.lockWhere(ctx, (query) => query.where('state', '=', 'active').where('lease_token', 'like', `${instance}.%`));
        for (const row of held) await writes.recoverCrashed(ctx, row);
        return held.length;
      });
      this.options.logger.warn({ jobs: recovered, instance }, 'an engine instance is gone; recovered the jobs it held');
    }
    // It may have died while taking tickets: between taking and removing them, or before its lease committed.
    if (gone.size > 0) this.reconcileWanted = true;
  }

  /** Whether an instance's commands connection (as its heartbeat recorded it) is still open on Redis. */
  private async stillConnected(instance: string): Promise<boolean> {
    const clientId = await this.redis.commands.hget(this.key('instance-clients'), instance);
    if (!clientId) return false;
    try {
      const listing = String(await this.redis.commands.call('CLIENT', 'LIST', 'ID', clientId));
      return listing.trim() !== '';
    } catch (error) {
      // CLIENT LIST ID needs Redis 6.2; without it, a missed heartbeat alone decides.
      this.options.logger.debug({ err: toError(error) }, 'CLIENT LIST ID failed');
      return false;
    }
  }

  /**
   * Notices Redis losing its data (a restart without persistence, a failover): the epoch key is
   * gone, or holds another value than this instance saw. Then every waiting job is put back on
   * BullMQ at once, and heartbeats get time to come back before anyone is judged dead.
   */
  private async checkRedisEpoch(): Promise<void> {
    const now = this.options.clock.now();
    let previous: unknown;
    try {
      previous = await this.redis.commands.eval(EPOCH_SCRIPT, 1, this.key('epoch'), `${now}:${this.instanceId}`);
    } catch (error) {
      this.options.logger.warn({ err: toError(error) }, 'checking the Redis epoch failed');
      this.lastRedisTroubleAt = now;
      return;
    }
    const epoch = typeof previous === 'string' ? previous : `${now}:${this.instanceId}`;
    // A missing key means a Redis that lost its data, or a first start: either way, heartbeats may
    // be missing for a moment (live processes reconnecting), so nobody is judged gone meanwhile.
    if (typeof previous !== 'string') this.lastRedisTroubleAt = now;
    if (this.knownEpoch !== null && epoch !== this.knownEpoch) {
      this.options.logger.warn('Redis lost its data (restart or failover): re-enqueueing waiting jobs from PostgreSQL');
      this.lastRedisTroubleAt = now;
      this.reconcileWanted = true;
    }
    this.knownEpoch = epoch;
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
    const lock = this.key('reconcile-lock');
    if ((await this.redis.commands.set(lock, this.instanceId, 'PX', 60_000, 'NX')) !== 'OK') return null;
    let enqueued = 0;
    try {
      // Heartbeats of the instances not (yet) judged gone; tickets locked by any other are orphans.
      const alive = new Set(await this.redis.commands.zrange(this.key('instances'), '0', '-1'));
      const lockedByLiveInstance = (token: string) => alive.has(writes.leaseInstance(token));
      let after = '';
      for (;;) {
        const rows = await this.options.db
          .selectFrom('jobs')
          .select(['id', 'queue', 'type', 'priority', 'run_at', 'last_seq'])
          .where('state', 'in', ['queued', 'scheduled'])
          .where('id', '>', after)
          .orderBy('id')
          .limit(RECONCILE_PAGE)
          .execute();
        if (rows.length === 0) break;
        after = rows.at(-1)!.id;
        const missing = await this.dispatch.lost(
          rows.map((row) => ({ jobId: row.id, seq: row.last_seq, queue: row.queue, type: row.type, priority: row.priority, runAt: Number(row.run_at) })),
          lockedByLiveInstance,
        );
        if (missing.length > 0) {
          const now = this.options.clock.now();
          await this.dispatch.add(missing, now);
          enqueued += missing.length;
          for (const queue of new Set(missing.filter((ticket) => ticket.runAt <= now).map((ticket) => ticket.queue))) {
            this.announceAvailable(queue);
            this.signal({ kind: 'available', queue });
          }
          this.scheduleWakeups(missing, now);
        }
      }
    } finally {
      await this.redis.commands.eval(DELETE_IF_EQUAL, 1, lock, this.instanceId).catch(() => undefined);
    }
    if (enqueued > 0) this.options.logger.warn({ jobs: enqueued }, 're-enqueued waiting jobs BullMQ did not hold');
    return enqueued;
  }

  /** Deletes finished jobs past retention in small chunks. */
  private async purgeFinished(now: number): Promise<void> {
    for (const [state, cutoff] of retentionCutoffs(now, this.options.retention)) {
      for (;;) {
        if (!this.running) return;
        const deleted = await this.deleteFinished((query) => query.where('state', '=', state).where('finished_at', '<', cutoff), RETENTION_CHUNK);
        if (deleted < RETENTION_CHUNK) break;
      }
    }
  }
}

/** Waits for `promise` at most `ms`: true if it settled in time (its rejection is passed on), false otherwise. */
async function within(ms: number, promise: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
