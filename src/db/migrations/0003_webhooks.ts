import { sql, type Kysely } from 'kysely';

/** Webhook endpoints, their deliveries and attempts, and the outbox position of each job-event consumer. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('webhook_endpoints')
    .addColumn('id', 'varchar(36)', (column) => column.primaryKey())
    // A deleted user's endpoints go with them, and so (below) do their deliveries and attempts.
    .addColumn('owner_id', 'varchar(36)', (column) => column.notNull().references('users.id').onDelete('cascade'))
    .addColumn('url', 'varchar(2048)', (column) => column.notNull())
    .addColumn('description', 'varchar(500)')
    .addColumn('events', 'text', (column) => column.notNull())
    .addColumn('queue', 'varchar(200)')
    .addColumn('secret', 'varchar(100)', (column) => column.notNull())
    .addColumn('previous_secret', 'varchar(100)')
    .addColumn('previous_secret_expires_at', 'bigint')
    .addColumn('enabled', 'integer', (column) => column.notNull())
    .addColumn('disabled_reason', 'varchar(500)')
    .addColumn('failing_since', 'bigint')
    .addColumn('created_at', 'bigint', (column) => column.notNull())
    .addColumn('updated_at', 'bigint', (column) => column.notNull())
    .execute();
  // The dispatcher looks up the enabled endpoints of the owners of a batch of events.
  await db.schema.createIndex('webhook_endpoints_owner').on('webhook_endpoints').columns(['owner_id', 'enabled']).execute();

  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('id', 'varchar(40)', (column) => column.primaryKey())
    .addColumn('endpoint_id', 'varchar(36)', (column) => column.notNull().references('webhook_endpoints.id').onDelete('cascade'))
    .addColumn('event_type', 'varchar(32)', (column) => column.notNull())
    .addColumn('job_id', 'varchar(36)')
    .addColumn('event_seq', 'integer')
    .addColumn('payload', 'text', (column) => column.notNull())
    .addColumn('status', 'varchar(16)', (column) => column.notNull())
    .addColumn('attempts', 'integer', (column) => column.notNull())
    .addColumn('series_attempts', 'integer', (column) => column.notNull())
    .addColumn('next_attempt_at', 'bigint', (column) => column.notNull())
    .addColumn('locked_until', 'bigint')
    .addColumn('last_status_code', 'integer')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'bigint', (column) => column.notNull())
    .addColumn('updated_at', 'bigint', (column) => column.notNull())
    .execute();
  // The sender: due pending deliveries, earliest first.
  await db.schema.createIndex('webhook_deliveries_due').on('webhook_deliveries').columns(['status', 'next_attempt_at']).execute();
  // The delivery log of an endpoint, newest first.
  await db.schema
    .createIndex('webhook_deliveries_endpoint')
    .on('webhook_deliveries')
    .columns(['endpoint_id', 'created_at desc', 'id desc'])
    .execute();

  await db.schema
    .createTable('webhook_attempts')
    .addColumn('id', 'varchar(36)', (column) => column.primaryKey())
    .addColumn('delivery_id', 'varchar(40)', (column) => column.notNull().references('webhook_deliveries.id').onDelete('cascade'))
    .addColumn('attempted_at', 'bigint', (column) => column.notNull())
    .addColumn('status_code', 'integer')
    .addColumn('duration_ms', 'integer', (column) => column.notNull())
    .addColumn('error', 'text')
    .addColumn('response_excerpt', 'text')
    .execute();
  await db.schema.createIndex('webhook_attempts_delivery').on('webhook_attempts').columns(['delivery_id', 'attempted_at']).execute();

  await db.schema
    .createTable('outbox_cursors')
    .addColumn('consumer', 'varchar(64)', (column) => column.primaryKey())
    .addColumn('position', 'bigint', (column) => column.notNull())
    .execute();
  // Start after the events that exist now: no endpoint existed when they were written.
  await sql`insert into outbox_cursors (consumer, position) select 'webhooks', coalesce(max(id), 0) from job_events`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['outbox_cursors', 'webhook_attempts', 'webhook_deliveries', 'webhook_endpoints']) {
    await db.schema.dropTable(table).execute();
  }
}
