import type { Kysely } from 'kysely';

/**
 * Cron schedules, and the fire time a schedule's job was created for. The unique index on
 * (schedule_id, fire_at) is what makes a fire time create at most one job, whatever happens:
 * restarts, a crash at the fire instant, several scheduler processes.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('schedules')
    .addColumn('id', 'varchar(36)', (column) => column.primaryKey())
    .addColumn('owner_id', 'varchar(36)', (column) => column.notNull())
    .addColumn('name', 'varchar(200)', (column) => column.notNull())
    .addColumn('cron', 'varchar(200)', (column) => column.notNull())
    .addColumn('timezone', 'varchar(64)', (column) => column.notNull())
    .addColumn('job', 'text', (column) => column.notNull())
    .addColumn('overlap', 'varchar(8)', (column) => column.notNull())
    .addColumn('catch_up', 'varchar(8)', (column) => column.notNull())
    .addColumn('enabled', 'integer', (column) => column.notNull())
    .addColumn('next_run_at', 'bigint')
    .addColumn('last_run_at', 'bigint')
    .addColumn('created_at', 'bigint', (column) => column.notNull())
    .addColumn('updated_at', 'bigint', (column) => column.notNull())
    .execute();
  await db.schema.createIndex('schedules_due').on('schedules').columns(['enabled', 'next_run_at']).execute();
  await db.schema.createIndex('schedules_owner').on('schedules').columns(['owner_id', 'id']).execute();

  await db.schema.alterTable('jobs').addColumn('fire_at', 'bigint').execute();
  await db.schema.createIndex('jobs_schedule_fire').on('jobs').columns(['schedule_id', 'fire_at']).unique().execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('jobs_schedule_fire').execute();
  await db.schema.alterTable('jobs').dropColumn('fire_at').execute();
  await db.schema.dropTable('schedules').execute();
}
