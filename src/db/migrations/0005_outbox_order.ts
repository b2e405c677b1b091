import { PostgresAdapter, sql, type Kysely } from 'kysely';

/**
 * PostgreSQL: several processes insert job events at once, so an event id can commit after a
 * larger one. Each event row records its transaction id (`tx`), and the outbox is read in
 * (tx, id) order up to the oldest transaction still running, past which nothing new can appear.
 * SQLite has one writer at a time: its ids commit in order, nothing changes there.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  // Existing rows take this migration's transaction id, and so does the cursor below: the
  // order among them stays the id order, and the cursor keeps its place.
  await sql`alter table job_events add column tx xid8 not null default pg_current_xact_id()`.execute(db);
  await sql`create index job_events_tx_id on job_events (tx, id)`.execute(db);
  await sql`alter table outbox_cursors add column position_tx xid8`.execute(db);
  await sql`update outbox_cursors set position_tx = pg_current_xact_id()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  await sql`alter table outbox_cursors drop column position_tx`.execute(db);
  await sql`drop index job_events_tx_id`.execute(db);
  await sql`alter table job_events drop column tx`.execute(db);
}
