import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { createDatabase, migrateToLatest } from '../../src/config/database.js';
import { migrations } from '../../src/db/migrations/index.js';
import { createTestDatabase, testDatabases } from '../helpers/postgres.js';

const databases = await testDatabases();
const ACCOUNT_TABLES = ['api_keys', 'job_events', 'job_tags', 'jobs', 'password_resets', 'queues', 'refresh_tokens', 'schedules', 'users'];

describe.each(databases)('migrations on %s', (kind) => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  async function open() {
    if (kind === 'postgres') {
      const database = await createTestDatabase();
      cleanups.push(database.drop);
      const handle = createDatabase({ kind: 'postgres', url: database.url });
      cleanups.push(() => handle.close());
      return handle;
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'jobline-migrate-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const handle = createDatabase({ kind: 'sqlite', file: path.join(dir, 'jobline.db') });
    cleanups.push(() => handle.close());
    return handle;
  }

  it('creates every table, and a second run applies nothing', async () => {
    const handle = await open();
    expect(await migrateToLatest(handle.db)).toEqual(Object.keys(migrations).sort());
    expect(await migrateToLatest(handle.db)).toEqual([]);
    const tables = (await handle.db.introspection.getTables()).map((table) => table.name).sort();
    expect(tables).toEqual(expect.arrayContaining(ACCOUNT_TABLES));
  });

  it('stores epoch milliseconds and reads them back as numbers', async () => {
    const handle = await open();
    await migrateToLatest(handle.db);
    const at = Date.parse('2030-05-06T07:08:09.123Z');
    await handle.db
      .insertInto('users')
      .values({ id: 'u1', email: 'a@b.c', password_hash: 'h', role: 'user', token_version: 0, created_at: at, updated_at: at })
      .execute();
    const row = await handle.db.selectFrom('users').selectAll().executeTakeFirstOrThrow();
    expect(row.created_at).toBe(at);
  });

  it('enforces unique emails and cascades deletes to API keys', async () => {
    const handle = await open();
    await migrateToLatest(handle.db);
    const user = { id: 'u1', email: 'a@b.c', password_hash: 'h', role: 'user' as const, token_version: 0, created_at: 1, updated_at: 1 };
    await handle.db.insertInto('users').values(user).execute();
    await expect(handle.db.insertInto('users').values({ ...user, id: 'u2' }).execute()).rejects.toThrow();
    await handle.db
      .insertInto('api_keys')
      .values({ id: 'k1', user_id: 'u1', name: 'k', prefix: 'jl_x', key_hash: 'h', scopes: '[]', created_at: 1, expires_at: null, last_used_at: null, revoked_at: null })
      .execute();
    await handle.db.deleteFrom('users').where('id', '=', 'u1').execute();
    expect(await handle.db.selectFrom('api_keys').selectAll().execute()).toEqual([]);
  });
});

describe('SQLite settings', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'jobline-sqlite-'));
  const file = path.join(dir, 'jobline.db');
  const handle = createDatabase({ kind: 'sqlite', file });
  afterAll(async () => {
    await handle.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs in WAL mode with a busy timeout', async () => {
    await migrateToLatest(handle.db);
    const journal = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(handle.db);
    expect(journal.rows[0]?.journal_mode).toBe('wal');
    const timeout = await sql<{ timeout: number }>`pragma busy_timeout`.execute(handle.db);
    expect(timeout.rows[0]?.timeout).toBe(5000);
  });

  it('takes the write lock when a transaction begins, not at its first write', async () => {
    const other = new SqliteDatabase(file);
    other.pragma('busy_timeout = 0');
    try {
      await handle.db.transaction().execute(async (trx) => {
        await trx.selectFrom('users').selectAll().execute();
        // The transaction has only read; another connection must still be kept from writing.
        expect(() =>
          other.prepare("insert into users values ('x','x@y.z','h','user',0,1,1)").run(),
        ).toThrow(/locked|busy/i);
      });
      other.prepare("insert into users values ('x','x@y.z','h','user',0,1,1)").run();
    } finally {
      other.close();
    }
  });
});
