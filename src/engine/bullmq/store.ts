import { sql, type Insertable, type SelectQueryBuilder, type Transaction } from 'kysely';
import type { Database, JobTagsTable } from '../../db/schema.js';
import { hasDedupKey, LIVE_STATES, type AfterCommit, type EventRow, type Plan } from '../changes.js';
import type { JobRow } from '../rows.js';
import type { NewJob } from '../types.js';

/**
 * The BullMQ engine's store: applies plans to PostgreSQL inside the caller's transaction. Row
 * updates are written as they come; new rows, tags and event rows are inserted together at the
 * end of the transaction (each event row records its transaction id: the outbox reads in that order).
 */
export interface PgWriteContext {
  trx: Transaction<Database>;
  now: number;
  after: AfterCommit;
  maxCrashes: number;
  /** Rows to insert when the transaction's work is done (see insertPending). */
  pending: { jobs: JobRow[]; tags: Insertable<JobTagsTable>[]; events: EventRow[] };
}

export type JobsQuery = SelectQueryBuilder<Database, 'jobs', JobRow>;

const INSERT_CHUNK = 500;
const SWEEP_BATCH = 500;

/** Writes a plan (its row now, its inserts at the end) and keeps its after-commit work. Returns the new row. */
export async function applyPlan(ctx: PgWriteContext, plan: Plan): Promise<JobRow> {
  if (plan.write.kind === 'insert') {
    ctx.pending.jobs.push(plan.row);
    for (const tag of plan.write.tags) ctx.pending.tags.push({ tag, created_at: ctx.now, job_id: plan.row.id });
  } else {
    await ctx.trx.updateTable('jobs').set(plan.write.set).where('id', '=', plan.row.id).execute();
  }
  ctx.pending.events.push(...plan.eventRows);
  ctx.after.add(plan);
  return plan.row;
}

/** Applies a plan that may be null (a lease that was lost: nothing to write). */
export async function applyIfAny(ctx: PgWriteContext, plan: Plan | null): Promise<void> {
  if (plan) await applyPlan(ctx, plan);
}

/** Applies the activation plans of one claim (see planClaim; each sets the same columns) as one multi-row UPDATE. */
export async function applyActivations(ctx: PgWriteContext, plans: Plan[]): Promise<void> {
  if (plans.length === 0) return;
  // Every column from the plan's row: the statement stores exactly what each plan says.
  const values = sql.join(
    plans.map(
      ({ row }) =>
        sql`(${row.id}, ${row.lease_token}::text, ${row.last_seq}::integer, ${row.attempts_made}::integer, ${row.started_at}::bigint, ${row.lease_expires_at}::bigint, ${row.worker_id}::text)`,
    ),
  );
  await sql`
    update jobs as j set state = 'active', attempts_made = v.attempts_made, started_at = v.started_at, lease_token = v.token,
      lease_expires_at = v.lease_expires_at, worker_id = v.worker_id, last_seq = v.seq
    from (values ${values}) as v(id, token, seq, attempts_made, started_at, lease_expires_at, worker_id)
    where j.id = v.id`.execute(ctx.trx);
  for (const plan of plans) {
    ctx.pending.events.push(...plan.eventRows);
    ctx.after.add(plan);
  }
}

/** Inserts the transaction's new rows, tags and event rows, in chunks. */
export async function insertPending(ctx: PgWriteContext): Promise<void> {
  const { jobs, tags, events } = ctx.pending;
  ctx.pending = { jobs: [], tags: [], events: [] };
  for (let start = 0; start < jobs.length; start += INSERT_CHUNK) await ctx.trx.insertInto('jobs').values(jobs.slice(start, start + INSERT_CHUNK)).execute();
  for (let start = 0; start < tags.length; start += INSERT_CHUNK) await ctx.trx.insertInto('job_tags').values(tags.slice(start, start + INSERT_CHUNK)).execute();
  for (let start = 0; start < events.length; start += INSERT_CHUNK) await ctx.trx.insertInto('job_events').values(events.slice(start, start + INSERT_CHUNK)).execute();
}

export async function lockRow(ctx: PgWriteContext, id: string): Promise<JobRow | undefined> {
  return ctx.trx.selectFrom('jobs').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

/** Locks rows in id order (so two transactions locking overlapping sets cannot deadlock). */
export async function lockRows(ctx: PgWriteContext, ids: string[]): Promise<JobRow[]> {
  if (ids.length === 0) return [];
  return ctx.trx.selectFrom('jobs').selectAll().where('id', 'in', ids).orderBy('id').forUpdate().execute();
}

/** Locks up to a batch of matching rows; several processes sweep, and each takes rows no other sweep holds. */
export function lockWhere(ctx: PgWriteContext, where: (query: JobsQuery) => JobsQuery): Promise<JobRow[]> {
  return where(ctx.trx.selectFrom('jobs').selectAll()).orderBy('id').limit(SWEEP_BATCH).forUpdate().skipLocked().execute();
}

/** The stored rows that may hold the dedup keys of a batch's submissions: one query per chunk of them. */
export async function dedupCandidates(ctx: PgWriteContext, jobs: NewJob[]): Promise<JobRow[]> {
  const keyed = jobs.filter(hasDedupKey);
  const rows: JobRow[] = [];
  for (let start = 0; start < keyed.length; start += INSERT_CHUNK) {
    const chunk = keyed.slice(start, start + INSERT_CHUNK);
    const found = await ctx.trx
      .selectFrom('jobs')
      .selectAll()
      .where((eb) =>
        eb.or(
          chunk.flatMap((job) => [
            ...(job.scheduleId !== null && job.fireAt != null ? [eb.and([eb('schedule_id', '=', job.scheduleId), eb('fire_at', '=', job.fireAt)])] : []),
            ...(job.idempotencyKey !== null ? [eb.and([eb('owner_id', '=', job.ownerId), eb('idempotency_key', '=', job.idempotencyKey)])] : []),
            ...(job.singletonKey !== null
              ? [eb.and([eb('owner_id', '=', job.ownerId), eb('singleton_key', '=', job.singletonKey), eb('state', 'in', [...LIVE_STATES])])]
              : []),
          ]),
        ),
      )
      .execute();
    rows.push(...found);
  }
  return rows;
}

/** The live job holding an owner's singleton key, if any. */
export async function singletonHolder(db: Pick<Transaction<Database>, 'selectFrom'>, ownerId: string, singletonKey: string): Promise<string | null> {
  const row = await db
    .selectFrom('jobs')
    .select('id')
    .where('owner_id', '=', ownerId)
    .where('singleton_key', '=', singletonKey)
    .where('state', 'in', [...LIVE_STATES])
    .executeTakeFirst();
  return row?.id ?? null;
}

/** Removes jobs with their events and tags. */
export async function deleteJobs(ctx: PgWriteContext, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await ctx.trx.deleteFrom('job_events').where('job_id', 'in', ids).execute();
  await ctx.trx.deleteFrom('job_tags').where('job_id', 'in', ids).execute();
  await ctx.trx.deleteFrom('jobs').where('id', 'in', ids).execute();
}
