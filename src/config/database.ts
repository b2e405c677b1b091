import { mkdirSync } from 'node:fs';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  SqliteDriver,
  sql,
  type DatabaseConnection,
  type Driver,
  type MigrationResultSet,
} from 'kysely';
import pg from 'pg';
import type { Database } from '../db/schema.js';
import { migrations } from '../db/migrations/index.js';
import type { DatabaseConfig } from './env.js';

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  readonly db: Db;
  readonly dialect: 'sqlite' | 'postgres';
  /** The SQLite connection itself (embedded engine); null on PostgreSQL. */
  readonly sqlite: SqliteDatabase.Database | null;
  /** Answers when the database does; throws otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** SQLite write transactions take the write lock up front, so they never fail half-way on SQLITE_BUSY. */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly database: SqliteDatabase.Database) {
    super({ database });
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver({ database: this.database });
  }
}

export function openSqlite(file: string, synchronous: 'NORMAL' | 'FULL' = 'NORMAL'): SqliteDatabase.Database {
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  const database = new SqliteDatabase(file);
  database.pragma('journal_mode = WAL');
  // NORMAL in WAL mode: a commit survives a process crash; only an OS crash or power loss can
  // take the last transactions. FULL also survives those, at the cost of an fsync per commit.
  database.pragma(`synchronous = ${synchronous}`);
  database.pragma('busy_timeout = 5000');
  database.pragma('foreign_keys = ON');
  return database;
}

/** int8 (bigint) columns hold epoch milliseconds, which fit a JS number: parse them as numbers. */
const BIGINT_OID = 20;
const postgresTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === BIGINT_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export function createDatabase(config: DatabaseConfig): DatabaseHandle {
  if (config.kind === 'sqlite') {
    const sqlite = openSqlite(config.file, config.synchronous);
    const db = new Kysely<Database>({ dialect: new ImmediateSqliteDialect(sqlite) });
    return {
      db,
      dialect: 'sqlite',
      sqlite,
      ping: async () => {
        await sql`select 1`.execute(db);
      },
      close: () => db.destroy(),
    };
  }
  const pool = new pg.Pool({
    connectionString: config.url,
    max: 10,
    connectionTimeoutMillis: 5000,
    types: postgresTypes,
  });
  // An idle client that loses its connection emits 'error'; the pool replaces it, so only note it.
  pool.on('error', () => undefined);
  // So does a client in use between two statements (a transaction awaiting its next one): unheard,
  // that would crash the process. The statement that next uses it fails, and the pool drops it.
  pool.on('connect', (client) => client.on('error', () => undefined));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    db,
    dialect: 'postgres',
    sqlite: null,
    ping: async () => {
      await sql`select 1`.execute(db);
    },
    close: () => db.destroy(),
  };
}

/** Applies every pending migration; returns the names applied. Safe to run from several processes. */
export async function migrateToLatest(db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableName: 'jobline_migrations',
    migrationLockTableName: 'jobline_migrations_lock',
  });
  const outcome: MigrationResultSet = await migrator.migrateToLatest();
  if (outcome.error) {
    const failed = outcome.results?.find((result) => result.status === 'Error');
    throw new Error(`Migration ${failed?.migrationName ?? '(unknown)'} failed: ${String(outcome.error)}`, {
      cause: outcome.error,
    });
  }
  return (outcome.results ?? []).filter((result) => result.status === 'Success').map((result) => result.migrationName);
}
