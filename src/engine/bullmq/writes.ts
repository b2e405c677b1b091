import { randomUUID } from 'node:crypto';
import { sql, type Insertable, type Kysely, type Transaction } from 'kysely';
import type { Database, JobEventsTable } from '../../db/schema.js';
import { crashError, decideAfterCrash, decideAfterFailure, expiredError } from '../lifecycle.js';
import { rowToJob, type JobRow } from '../records.js';
import {
  finishEvent,
  leaseExpiredError,
  newJobRow,
  planHandlerEvents,
  releasedError,
  requireTransition,
  retryingData,
} from '../transitions.js';
import type { AttemptFailure, BackoffPolicy, Claim, HandlerEvent, JobError, JobEvent, JobEventType, JobState, NewJob, Outcome } from '../types.js';

/**
 * The BullMQ engine's state changes in PostgreSQL. Each runs inside a caller's transaction,
 * writes the new state and its event rows together (the outbox), and records what to do after
 * commit: tickets to put on BullMQ, events to announce, queues to wake.
 */

/** A job that can run, as BullMQ carries it: the ticket id is `<jobId>-<seq>`, seq the job's last event when it became runnable. */
export interface Ticket {
  jobId: string;
  seq: number;
  queue: string;
  type: string;
  priority: number;
  runAt: number;
}

export function ticketId(ticket: Pick<Ticket, 'jobId' | 'seq'>): string {
  return `${ticket.jobId}-${ticket.seq}`;
}

export function parseTicketId(id: string): { jobId: string; seq: number } | null {
  const dash = id.lastIndexOf('-');
  const seq = Number(id.slice(dash + 1));
  if (dash <= 0 || !Number.isInteger(seq)) return null;
  return { jobId: id.slice(0, dash), seq };
}

export function ticketOf(row: JobRow): Ticket {
  return { jobId: row.id, seq: row.last_seq, queue: row.queue, type: row.type, priority: row.priority, runAt: Number(row.run_at) };
}

export class PgChanges {
  readonly events: JobEvent[] = [];
  readonly tickets: Ticket[] = [];
  readonly available = new Set<string>();
  readonly cancelledActive: string[] = [];
}

export interface PgWriteContext {
  trx: Transaction<Database>;
  now: number;
  changes: PgChanges;
  maxCrashes: number;
  /** Event rows, inserted together at the end of the transaction (see insertEventRows). */
  eventRows: Insertable<JobEventsTable>[];
}

const INSERT_CHUNK = 500;

/** Inserts the transaction's event rows (each records its transaction id: the outbox reads in that order). */
export async function insertEventRows(ctx: PgWriteContext): Promise<void> {
  if (ctx.eventRows.length === 0) return;
  for (let start = 0; start < ctx.eventRows.length; start += INSERT_CHUNK) {
    await ctx.trx.insertInto('job_events').values(ctx.eventRows.slice(start, start + INSERT_CHUNK)).execute();
  }
  ctx.eventRows = [];
}

function addEvent(ctx: PgWriteContext, row: JobRow, type: JobEventType, data: Record<string, unknown>): number {
  const seq = row.last_seq + 1;
  row.last_seq = seq;
  ctx.eventRows.push({ job_id: row.id, seq, seq_end: null, type, at: ctx.now, data: JSON.stringify(data) });
  ctx.changes.events.push({ type, jobId: row.id, seq, at: ctx.now, data, queue: row.queue, ownerId: row.owner_id });
  return seq;
}

/** A row that became queued or scheduled gets a ticket (after commit). */
function dispatch(ctx: PgWriteContext, row: JobRow): void {
  ctx.changes.tickets.push(ticketOf(row));
  if (row.state === 'queued') ctx.changes.available.add(row.queue);
}

export function newLeaseToken(instanceId: string): string {
  return `${instanceId}.${randomUUID()}`;
}

/** The engine instance that took a lease (the part of its token before the dot). */
export function leaseInstance(token: string): string {
  return token.slice(0, token.indexOf('.'));
}

export async function lockRow(ctx: PgWriteContext, id: string): Promise<JobRow | undefined> {
  return ctx.trx.selectFrom('jobs').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

/** Locks rows in id order (so two transactions locking overlapping sets cannot deadlock). */
export async function lockRows(ctx: PgWriteContext, ids: string[]): Promise<JobRow[]> {
  if (ids.length === 0) return [];
  return ctx.trx.selectFrom('jobs').selectAll().where('id', 'in', ids).orderBy('id').forUpdate().execute();
}

export async function insertJobs(ctx: PgWriteContext, jobs: { id: string; job: NewJob }[]): Promise<JobRow[]> {
  const rows = jobs.map(({ id, job }) => {
    const row = newJobRow(id, job, ctx.now);
    addEvent(ctx, row, 'job.created', {});
    return row;
  });
  for (let start = 0; start < rows.length; start += INSERT_CHUNK) {
    await ctx.trx.insertInto('jobs').values(rows.slice(start, start + INSERT_CHUNK)).execute();
  }
  const tags = jobs.flatMap(({ id, job }) => [...new Set(job.tags)].map((tag) => ({ tag, created_at: ctx.now, job_id: id })));
  for (let start = 0; start < tags.length; start += INSERT_CHUNK) {
    await ctx.trx.insertInto('job_tags').values(tags.slice(start, start + INSERT_CHUNK)).execute();
  }
  for (const row of rows) dispatch(ctx, row);
  return rows;
}

/** Marks claimable rows active, each under its own lease token, with their job.active events. */
export async function activateRows(
  ctx: PgWriteContext,
  taken: { row: JobRow; token: string }[],
  workerId: string,
  leaseMs: number,
): Promise<Claim[]> {
  if (taken.length === 0) return [];
  const leaseExpiresAt = ctx.now + leaseMs;
  const claims = taken.map(({ row, token }) => {
    const attempt = row.attempts_made + 1;
    addEvent(ctx, row, 'job.active', { attempt, workerId });
    const job = rowToJob({ ...row, state: 'active', attempts_made: attempt, started_at: ctx.now, lease_token: token, lease_expires_at: leaseExpiresAt });
    return { job, token, leaseExpiresAt, attempt };
  });
  const values = sql.join(claims.map((claim) => sql`(${claim.job.id}, ${claim.token}, ${claim.job.lastSeq}::integer)`));
  await sql`
    update jobs as j set state = 'active', attempts_made = j.attempts_made + 1, started_at = ${ctx.now}, lease_token = v.token,
      lease_expires_at = ${leaseExpiresAt}, worker_id = ${workerId}, last_seq = v.seq
    from (values ${values}) as v(id, token, seq)
    where j.id = v.id`.execute(ctx.trx);
  return claims;
}

/** Moves a row to completed, failed or cancelled, with its event. */
export async function finish(
  ctx: PgWriteContext,
  row: JobRow,
  action: 'complete' | 'fail' | 'cancel' | 'expire',
  outcome: { result?: unknown; error?: JobError },
): Promise<JobRow> {
  const state = requireTransition(row, action);
  const { type, data } = finishEvent(state, outcome);
  if (row.state === 'active' && state === 'cancelled') ctx.changes.cancelledActive.push(row.id);
  const seq = addEvent(ctx, row, type, data);
  const result = outcome.result === undefined ? row.result : JSON.stringify(outcome.result ?? null);
  const error = outcome.error === undefined ? row.error : JSON.stringify(outcome.error);
  await ctx.trx
    .updateTable('jobs')
    .set({ state, result, error, finished_at: ctx.now, lease_token: null, lease_expires_at: null, last_seq: seq })
    .where('id', '=', row.id)
    .execute();
  return { ...row, state, result, error, finished_at: ctx.now, lease_token: null, lease_expires_at: null, last_seq: seq };
}

/**
 * Completes several held jobs, each with its own lease check, and writes their job.completed
 * events: one statement, committed on its own (no transaction round trips). Returns an outcome
 * per item and the events written.
 */
export async function completeMany(
  db: Kysely<Database>,
  now: number,
  items: { jobId: string; token: string; result: unknown }[],
): Promise<{ outcomes: Outcome[]; events: JobEvent[] }> {
  const values = sql.join(items.map((item) => sql`(${item.jobId}, ${item.token}, ${JSON.stringify(item.result ?? null)}::text)`));
  const { rows } = await sql<JobRow>`
    with done as (
      update jobs as j set state = 'completed', result = v.result, finished_at = ${now}, lease_token = null,
        lease_expires_at = null, last_seq = j.last_seq + 1
      from (values ${values}) as v(id, token, result)
      where j.id = v.id and j.lease_token = v.token and j.state = 'active'
      returning j.*
    ), written as (
      insert into job_events (job_id, seq, seq_end, type, at, data)
      select id, last_seq, null, 'job.completed', ${now}, '{"result":' || result || '}' from done
    )
    select * from done`.execute(db);
  const done = new Map(rows.map((row) => [row.id, row]));
  const events: JobEvent[] = [];
  const outcomes = items.map((item): Outcome => {
    const row = done.get(item.jobId);
    if (!row) return { accepted: false, reason: 'lease_lost' };
    events.push({ type: 'job.completed', jobId: row.id, seq: row.last_seq, at: now, data: { result: item.result ?? null }, queue: row.queue, ownerId: row.owner_id });
    return { accepted: true, job: rowToJob(row) };
  });
  return { outcomes, events };
}

/** Puts an active job back: later (retry with backoff) or now (lease lost, released by its worker). */
async function reschedule(
  ctx: PgWriteContext,
  row: JobRow,
  action: 'retry_later' | 'lease_lost' | 'release',
  change: { runAt: number; error: JobError; attemptsMade: number; crashCount: number },
): Promise<JobRow> {
  requireTransition(row, action);
  const state: JobState = change.runAt > ctx.now ? 'scheduled' : 'queued';
  const seq = addEvent(ctx, row, 'job.retrying', retryingData(change.error, row.attempts_made, change.runAt));
  const update = {
    state,
    run_at: change.runAt,
    error: JSON.stringify(change.error),
    lease_token: null,
    lease_expires_at: null,
    started_at: null,
    attempts_made: change.attemptsMade,
    crash_count: change.crashCount,
    last_seq: seq,
  };
  await ctx.trx.updateTable('jobs').set(update).where('id', '=', row.id).execute();
  const next = { ...row, ...update };
  dispatch(ctx, next);
  return next;
}

async function heldRow(ctx: PgWriteContext, jobId: string, token: string): Promise<JobRow | null> {
  const row = await lockRow(ctx, jobId);
  return row && row.state === 'active' && row.lease_token === token ? row : null;
}

export async function fail(ctx: PgWriteContext, jobId: string, token: string, failure: AttemptFailure): Promise<Outcome> {
  const row = await heldRow(ctx, jobId, token);
  if (!row) return { accepted: false, reason: 'lease_lost' };
  const decision = decideAfterFailure({
    failure,
    attemptsMade: row.attempts_made,
    maxAttempts: row.max_attempts,
    backoff: JSON.parse(row.backoff) as BackoffPolicy,
    now: ctx.now,
  });
  const next =
    decision.kind === 'fail'
      ? await finish(ctx, row, 'fail', { error: failure.error })
      : await reschedule(ctx, row, 'retry_later', { runAt: decision.runAt, error: failure.error, attemptsMade: row.attempts_made, crashCount: row.crash_count });
  return { accepted: true, job: rowToJob(next) };
}

/** A worker died holding the job (its lease expired, or its engine instance is gone). */
export async function recoverCrashed(ctx: PgWriteContext, row: JobRow): Promise<void> {
  const crashes = row.crash_count + 1;
  if (decideAfterCrash(crashes, ctx.maxCrashes) === 'fail') {
    await finish(ctx, { ...row, crash_count: crashes }, 'fail', { error: crashError(crashes) });
    return;
  }
  await reschedule(ctx, row, 'lease_lost', {
    runAt: ctx.now,
    error: leaseExpiredError,
    // The interrupted attempt did not finish, so it does not use up one of the job's attempts.
    attemptsMade: Math.max(0, row.attempts_made - 1),
    crashCount: crashes,
  });
}

export async function release(ctx: PgWriteContext, jobId: string, token: string): Promise<void> {
  const row = await heldRow(ctx, jobId, token);
  if (!row) return;
  await reschedule(ctx, row, 'release', {
    runAt: ctx.now,
    error: releasedError,
    attemptsMade: Math.max(0, row.attempts_made - 1),
    crashCount: row.crash_count,
  });
}

export async function appendHandlerEvents(ctx: PgWriteContext, jobId: string, token: string, events: HandlerEvent[]): Promise<boolean> {
  const row = await heldRow(ctx, jobId, token);
  if (!row) return false;
  const plan = planHandlerEvents(row.last_seq, events);
  for (const stored of plan.rows) {
    ctx.eventRows.push({ job_id: row.id, seq: stored.seq, seq_end: stored.seqEnd, type: stored.type, at: ctx.now, data: JSON.stringify(stored.data) });
  }
  for (const event of plan.expanded) ctx.changes.events.push({ ...event, jobId: row.id, at: ctx.now, queue: row.queue, ownerId: row.owner_id });
  await ctx.trx
    .updateTable('jobs')
    .set(plan.progress === undefined ? { last_seq: plan.lastSeq } : { last_seq: plan.lastSeq, progress: JSON.stringify(plan.progress) })
    .where('id', '=', row.id)
    .execute();
  return true;
}

export async function manualRetry(ctx: PgWriteContext, row: JobRow): Promise<JobRow> {
  requireTransition(row, 'manual_retry');
  const seq = addEvent(ctx, row, 'job.retrying', retryingData(row.error === null ? null : (JSON.parse(row.error) as JobError), 0, ctx.now, true));
  const update = {
    state: 'queued' as const,
    run_at: ctx.now,
    error: null,
    result: null,
    progress: null,
    attempts_made: 0,
    crash_count: 0,
    started_at: null,
    finished_at: null,
    expires_at: null,
    last_seq: seq,
  };
  await ctx.trx.updateTable('jobs').set(update).where('id', '=', row.id).execute();
  const next = { ...row, ...update };
  dispatch(ctx, next);
  return next;
}

export async function expire(ctx: PgWriteContext, row: JobRow): Promise<void> {
  await finish(ctx, row, 'expire', { error: expiredError() });
}

/** Removes a job with its events and tags. */
export async function deleteJob(ctx: PgWriteContext, jobId: string): Promise<void> {
  await ctx.trx.deleteFrom('job_events').where('job_id', '=', jobId).execute();
  await ctx.trx.deleteFrom('job_tags').where('job_id', '=', jobId).execute();
  await ctx.trx.deleteFrom('jobs').where('id', '=', jobId).execute();
}
