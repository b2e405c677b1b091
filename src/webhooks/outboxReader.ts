import { PostgresAdapter, sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import type { JobEventRow } from '../engine/rows.js';

/**
 * Reads the job-event outbox after a consumer's cursor, in an order where nothing can later
 * appear behind the cursor.
 *
 * - SQLite has one writer at a time: event ids commit in order, so the cursor is an id.
 * - PostgreSQL has many writers: an id can commit after a larger one. Each row records its
 *   transaction id (`tx`, migration 0005); rows are read in (tx, id) order, and only those of
 *   transactions older than the oldest one still running (the snapshot's xmin), which are final.
 *   A long transaction anywhere on the server holds webhooks back until it ends.
 */
export interface OutboxReader {
  /** Whether events past the cursor are ready to read (a cheap look, outside a transaction). */
  hasNew(): Promise<boolean>;
  /** Moves the cursor past every ready event without reading them (nobody listens). */
  skipAll(): Promise<void>;
  /** Inside `trx`: locks the cursor and reads up to `limit` ready events after it, in order. */
  readLocked(trx: Transaction<Database>, limit: number): Promise<JobEventRow[]>;
  /** Inside `trx`: moves the cursor to `row` (the last one processed). */
  advance(trx: Transaction<Database>, row: JobEventRow): Promise<void>;
}

export function createOutboxReader(db: Kysely<Database>, consumer: string): OutboxReader {
  return db.getExecutor().adapter instanceof PostgresAdapter ? postgresReader(db, consumer) : sqliteReader(db, consumer);
}

function sqliteReader(db: Kysely<Database>, consumer: string): OutboxReader {
  const head = async () => Number((await db.selectFrom('job_events').select((eb) => eb.fn.max('id').as('id')).executeTakeFirst())?.id ?? 0);
  return {
    hasNew: async () => {
      const [last, cursor] = await Promise.all([
        head(),
        db.selectFrom('outbox_cursors').select('position').where('consumer', '=', consumer).executeTakeFirst(),
      ]);
      return last > Number(cursor?.position ?? 0);
    },
    skipAll: async () => {
      const last = await head();
      await db.updateTable('outbox_cursors').set({ position: last }).where('consumer', '=', consumer).where('position', '<', last).execute();
    },
    // The immediate transaction already holds SQLite's write lock.
    readLocked: async (trx, limit) => {
      const position = await ensureCursor(trx, consumer);
      return trx.selectFrom('job_events').selectAll().where('id', '>', position).orderBy('id').limit(limit).execute();
    },
    advance: async (trx, row) => {
      await trx.updateTable('outbox_cursors').set({ position: Number(row.id) }).where('consumer', '=', consumer).execute();
    },
  };
}

/** A row as PostgreSQL returns it with its transaction id (xid8 arrives as text). */
type PostgresEventRow = JobEventRow & { tx: string };

const READY = sql`pg_snapshot_xmin(pg_current_snapshot())`;

function postgresReader(db: Kysely<Database>, consumer: string): OutboxReader {
  const cursorOf = async (executor: Kysely<Database>, lock: boolean) => {
    const { rows } = await sql<{ tx: string | null; position: number }>`
      select position_tx::text as tx, position from outbox_cursors where consumer = ${consumer} ${lock ? sql`for update` : sql``}`.execute(executor);
    const row = rows[0];
    return row ? { tx: row.tx ?? '0', id: Number(row.position) } : null;
  };
  return {
    hasNew: async () => {
      const cursor = await cursorOf(db, false);
      if (!cursor) return true;
      const { rows } = await sql<{ found: boolean }>`
        select exists (select 1 from job_events where (tx, id) > (${cursor.tx}::xid8, ${cursor.id}) and tx < ${READY}) as found`.execute(db);
      return rows[0]?.found === true;
    },
    skipAll: async () => {
      await sql`
        with head as (select tx, id from job_events where tx < ${READY} order by tx desc, id desc limit 1)
        update outbox_cursors as c set position_tx = head.tx, position = head.id from head
        where c.consumer = ${consumer} and (head.tx, head.id) > (coalesce(c.position_tx, '0'::xid8), c.position)`.execute(db);
    },
    // Dispatchers of several processes take turns on the cursor row.
    readLocked: async (trx, limit) => {
      await ensureCursor(trx, consumer);
      const cursor = (await cursorOf(trx, true))!;
      const { rows } = await sql<PostgresEventRow>`
        select * from job_events where (tx, id) > (${cursor.tx}::xid8, ${cursor.id}) and tx < ${READY}
        order by tx, id limit ${limit}`.execute(trx);
      return rows;
    },
    advance: async (trx, row) => {
      await sql`update outbox_cursors set position = ${Number(row.id)}, position_tx = ${(row as PostgresEventRow).tx}::xid8 where consumer = ${consumer}`.execute(trx);
    },
  };
}

/** The consumer's cursor position, created at 0 if it has none. */
async function ensureCursor(trx: Transaction<Database>, consumer: string): Promise<number> {
  const row = await trx.selectFrom('outbox_cursors').select('position').where('consumer', '=', consumer).executeTakeFirst();
  if (row) return Number(row.position);
  await trx.insertInto('outbox_cursors').values({ consumer, position: 0 }).onConflict((conflict) => conflict.column('consumer').doNothing()).execute();
  return 0;
}
