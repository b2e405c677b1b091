import type SqliteDatabase from 'better-sqlite3';
import type { JobUpdate } from '../changes.js';
import type { JobRow } from '../rows.js';

/**
 * The embedded engine's SQL, prepared once. Each statement is named for what it does; all run
 * inside short synchronous transactions, so each batch commits atomically.
 */
export function prepareStatements(db: SqliteDatabase.Database) {
  const statement = <Row = unknown>(text: string): SqliteDatabase.Statement<unknown[], Row> => db.prepare<unknown[], Row>(text);
  return {
    insertJob: statement(`
      insert into jobs (id, queue, type, state, priority, payload, result, error, progress, attempts_made, max_attempts,
        crash_count, backoff, timeout_ms, expires_at, idempotency_key, singleton_key, tags, owner_id, schedule_id,
        created_at, run_at, started_at, finished_at, lease_token, lease_expires_at, worker_id, last_seq, fire_at)
      values (@id, @queue, @type, @state, @priority, @payload, @result, @error, @progress, @attempts_made, @max_attempts,
        @crash_count, @backoff, @timeout_ms, @expires_at, @idempotency_key, @singleton_key, @tags, @owner_id, @schedule_id,
        @created_at, @run_at, @started_at, @finished_at, @lease_token, @lease_expires_at, @worker_id, @last_seq, @fire_at)`),
    insertEvent: statement(`insert into job_events (job_id, seq, seq_end, type, at, data) values (?, ?, ?, ?, ?, ?)`),
    jobById: statement<JobRow>(`select * from jobs where id = ?`),
    jobByIdempotencyKey: statement<JobRow>(`select * from jobs where owner_id = ? and idempotency_key = ?`),
    jobByFireTime: statement<JobRow>(`select * from jobs where schedule_id = ? and fire_at = ?`),
    liveJobBySingletonKey: statement<JobRow>(
      `select * from jobs where owner_id = ? and singleton_key = ? and state in ('queued', 'scheduled', 'active')`,
    ),
    nextClaimable: statement<JobRow>(`
      select * from jobs
      where queue = ? and type = ? and state = 'queued'
      order by priority desc, id
      limit ?`),
    queuesWithWaitingJobs: statement<{ queue: string }>(`select distinct queue from jobs where state = 'queued'`),
    renewLease: statement(`update jobs set lease_expires_at = ? where id = ? and lease_token = ? and state = 'active'`),
    dueScheduled: statement<JobRow>(`select * from jobs where state = 'scheduled' and run_at <= ? order by run_at limit ?`),
    promote: statement(`update jobs set state = 'queued' where id = ? and state = 'scheduled'`),
    earliestScheduled: statement<{ run_at: number | null }>(`select min(run_at) as run_at from jobs where state = 'scheduled'`),
    expiredLeases: statement<JobRow>(`select * from jobs where state = 'active' and lease_expires_at < ? limit ?`),
    allActive: statement<JobRow>(`select * from jobs where state = 'active'`),
    expiredTtl: statement<JobRow>(
      `select * from jobs where state in ('queued', 'scheduled') and expires_at is not null and expires_at <= ? limit ?`,
    ),
    finishedBefore: statement<{ id: string }>(`select id from jobs where state = ? and finished_at < ? limit ?`),
    finishedInQueue: statement<{ id: string }>(
      `select id from jobs where queue = ? and state = ? and (? is null or finished_at < ?) limit ?`,
    ),
    failedInQueue: statement<{ id: string }>(`select id from jobs where queue = ? and state = 'failed' limit ?`),
    insertTag: statement(`insert or ignore into job_tags (tag, created_at, job_id) values (?, ?, ?)`),
    deleteTags: statement(`delete from job_tags where job_id = ?`),
    deleteEvents: statement(`delete from job_events where job_id = ?`),
    deleteJob: statement(`delete from jobs where id = ?`),
    upsertQueue: statement(`
      insert into queues (name, paused, updated_at) values (?, ?, ?)
      on conflict (name) do update set paused = excluded.paused, updated_at = excluded.updated_at`),
    pausedQueues: statement<{ name: string }>(`select name from queues where paused = 1`),
    updateJob: updater(db),
  };
}

/**
 * Writes a plan's columns of one job row. A plan sets one of a handful of column sets (its
 * shape), so one statement is prepared per shape, the first time it is used. The values are bound from the plan's
 * row (which holds them, and the id): a fresh parameter object per write cost as much as the write.
 */
function updater(db: SqliteDatabase.Database): (row: JobRow, write: { set: JobUpdate; shape: string }) => void {
  const prepared = new Map<string, SqliteDatabase.Statement>();
  return (row, { set, shape }) => {
    let statement = prepared.get(shape);
    if (!statement) {
      // Column names come from the plan's own keys (JobRow columns), never from a request.
      statement = db.prepare(`update jobs set ${Object.keys(set).map((column) => `${column} = @${column}`).join(', ')} where id = @id`);
      prepared.set(shape, statement);
    }
    statement.run(row);
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
