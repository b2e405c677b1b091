import { PostgresAdapter, sql, type Kysely } from 'kysely';

/** Jobs, their events (the outbox every consumer reads), and per-queue settings. */
export async function up(db: Kysely<unknown>): Promise<void> {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;

  await db.schema
    .createTable('jobs')
    .addColumn('id', 'varchar(36)', (column) => column.primaryKey())
    .addColumn('queue', 'varchar(200)', (column) => column.notNull())
    .addColumn('type', 'varchar(200)', (column) => column.notNull())
    .addColumn('state', 'varchar(16)', (column) => column.notNull())
    .addColumn('priority', 'integer', (column) => column.notNull())
    .addColumn('payload', 'text', (column) => column.notNull())
    .addColumn('result', 'text')
    .addColumn('error', 'text')
    .addColumn('progress', 'text')
    .addColumn('attempts_made', 'integer', (column) => column.notNull())
    .addColumn('max_attempts', 'integer', (column) => column.notNull())
    .addColumn('crash_count', 'integer', (column) => column.notNull())
    .addColumn('backoff', 'text', (column) => column.notNull())
    .addColumn('timeout_ms', 'integer')
    .addColumn('expires_at', 'bigint')
    .addColumn('idempotency_key', 'varchar(255)')
    .addColumn('singleton_key', 'varchar(255)')
    .addColumn('tags', 'text', (column) => column.notNull())
    .addColumn('owner_id', 'varchar(36)', (column) => column.notNull())
    .addColumn('schedule_id', 'varchar(36)')
    .addColumn('created_at', 'bigint', (column) => column.notNull())
    .addColumn('run_at', 'bigint', (column) => column.notNull())
    .addColumn('started_at', 'bigint')
    .addColumn('finished_at', 'bigint')
    .addColumn('lease_token', 'varchar(64)')
    .addColumn('lease_expires_at', 'bigint')
    .addColumn('worker_id', 'varchar(100)')
    .addColumn('last_seq', 'integer', (column) => column.notNull())
    .execute();
  // Partial indexes: each covers only the rows in the state it serves, so a state change
  // touches few index entries.
  // Claiming: the next queued jobs of a queue and type, highest priority first, oldest first within one.
  await db.schema
    .createIndex('jobs_claim')
    .on('jobs')
    .columns(['queue', 'type', 'priority desc', 'id'])
    .where(sql.ref('state'), '=', 'queued')
    .execute();
  // Sweeps: due scheduled jobs, expired leases, expired ttl, finished jobs past retention.
  await db.schema.createIndex('jobs_scheduled_run_at').on('jobs').column('run_at').where(sql.ref('state'), '=', 'scheduled').execute();
  await db.schema.createIndex('jobs_active_lease').on('jobs').column('lease_expires_at').where(sql.ref('state'), '=', 'active').execute();
  await db.schema
    .createIndex('jobs_waiting_expires')
    .on('jobs')
    .column('expires_at')
    .where(sql<boolean>`state in ('queued', 'scheduled')`)
    .where(sql.ref('expires_at'), 'is not', null)
    .execute();
  await db.schema.createIndex('jobs_finished').on('jobs').columns(['state', 'finished_at']).where(sql.ref('finished_at'), 'is not', null).execute();
  // Listings, newest first: everyone's, one owner's, by state, queue or type.
  await db.schema.createIndex('jobs_created').on('jobs').columns(['created_at desc', 'id desc']).execute();
  await db.schema.createIndex('jobs_owner_created').on('jobs').columns(['owner_id', 'created_at desc', 'id desc']).execute();
  await db.schema.createIndex('jobs_state_created').on('jobs').columns(['state', 'created_at desc', 'id desc']).execute();
  await db.schema.createIndex('jobs_queue_created').on('jobs').columns(['queue', 'created_at desc', 'id desc']).execute();
  await db.schema.createIndex('jobs_type_created').on('jobs').columns(['type', 'created_at desc', 'id desc']).execute();
  // Counts per queue and state (admin API, metrics) read this index alone.
  await db.schema.createIndex('jobs_queue_state').on('jobs').columns(['queue', 'state']).execute();
  await db.schema.createIndex('jobs_schedule').on('jobs').columns(['schedule_id', 'state']).where(sql.ref('schedule_id'), 'is not', null).execute();
  // The same idempotency key from the same owner is one job.
  await db.schema
    .createIndex('jobs_idempotency')
    .on('jobs')
    .columns(['owner_id', 'idempotency_key'])
    .unique()
    .where(sql.ref('idempotency_key'), 'is not', null)
    .execute();
  // At most one queued, scheduled or active job per owner and singleton key.
  await db.schema
    .createIndex('jobs_singleton')
    .on('jobs')
    .columns(['owner_id', 'singleton_key'])
    .unique()
    .where(sql.ref('singleton_key'), 'is not', null)
    .where(sql<boolean>`state in ('queued', 'scheduled', 'active')`)
    .execute();

  await db.schema
    .createTable('job_events')
    .addColumn('id', postgres ? 'bigserial' : 'integer', (column) => (postgres ? column.primaryKey() : column.primaryKey().autoIncrement()))
    .addColumn('job_id', 'varchar(36)', (column) => column.notNull())
    .addColumn('seq', 'integer', (column) => column.notNull())
    // A run of job.delta events is one row holding seq..seq_end; null for a single event.
    .addColumn('seq_end', 'integer')
    .addColumn('type', 'varchar(32)', (column) => column.notNull())
    .addColumn('at', 'bigint', (column) => column.notNull())
    .addColumn('data', 'text', (column) => column.notNull())
    .execute();
  await db.schema.createIndex('job_events_job_seq').on('job_events').columns(['job_id', 'seq']).unique().execute();

  // One row per tag of a job, in listing order: a tag filter walks this index, newest first.
  await db.schema
    .createTable('job_tags')
    .addColumn('tag', 'varchar(64)', (column) => column.notNull())
    .addColumn('created_at', 'bigint', (column) => column.notNull())
    .addColumn('job_id', 'varchar(36)', (column) => column.notNull())
    .addPrimaryKeyConstraint('job_tags_pk', ['tag', 'created_at', 'job_id'])
    .execute();
  await db.schema.createIndex('job_tags_job').on('job_tags').column('job_id').execute();

  await db.schema
    .createTable('queues')
    .addColumn('name', 'varchar(200)', (column) => column.primaryKey())
    .addColumn('paused', 'integer', (column) => column.notNull())
    .addColumn('updated_at', 'bigint', (column) => column.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['queues', 'job_tags', 'job_events', 'jobs']) await db.schema.dropTable(table).execute();
}
