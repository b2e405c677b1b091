import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, migrateToLatest, type DatabaseHandle } from '../../src/config/database.js';
import { createOutboxReader } from '../../src/webhooks/outboxReader.js';
import { createTestDatabase, postgresReachable } from '../helpers/postgres.js';

const available = await postgresReachable();

/**
 * On PostgreSQL an event id can commit after a larger one (two writers at once). The outbox must
 * not pass over the smaller one while its transaction is still open, nor read anything twice.
 */
describe.skipIf(!available)('the outbox on PostgreSQL with concurrent writers', () => {
  let database: { url: string; drop: () => Promise<void> };
  let handle: DatabaseHandle;

  beforeAll(async () => {
    database = await createTestDatabase();
    handle = createDatabase({ kind: 'postgres', url: database.url });
    await migrateToLatest(handle.db);
  });

  afterAll(async () => {
    await handle?.close();
    await database?.drop();
  });

  const event = (jobId: string, seq: number) => ({ job_id: jobId, seq, seq_end: null, type: 'job.log', at: Date.now(), data: '{}' });

  /** Reads every ready event after the cursor and moves the cursor past them, as the dispatcher does. */
  const consume = async () => {
    const reader = createOutboxReader(handle.db, 'test-consumer');
    return handle.db.transaction().execute(async (trx) => {
      const rows = await reader.readLocked(trx, 100);
      if (rows.length > 0) await reader.advance(trx, rows.at(-1)!);
      return rows.map((row) => `${row.job_id}:${row.seq}`);
    });
  };

  it('waits for an open transaction whose event has a smaller id, then reads it exactly once', async () => {
    expect(await consume()).toEqual([]);
    let releaseSlow!: () => void;
    const slowMayCommit = new Promise<void>((resolve) => (releaseSlow = resolve));
    let slowInserted!: () => void;
    const slowHasInserted = new Promise<void>((resolve) => (slowInserted = resolve));
    // The slow writer takes the smaller id and keeps its transaction open.
    const slow = handle.db.transaction().execute(async (trx) => {
      await trx.insertInto('job_events').values(event('slow', 1)).execute();
      slowInserted();
      await slowMayCommit;
    });
    await slowHasInserted;
    await handle.db.insertInto('job_events').values(event('fast', 1)).execute();
    const ids = await handle.db.selectFrom('job_events').select(['job_id', 'id']).orderBy('id').execute();
    expect(ids.map((row) => row.job_id)).toEqual(['fast']);

    // The fast event is committed, but reading it now would move the cursor past the slow one's id.
    const reader = createOutboxReader(handle.db, 'test-consumer');
    expect(await reader.hasNew()).toBe(false);
    expect(await consume()).toEqual([]);

    releaseSlow();
    await slow;
    expect(await reader.hasNew()).toBe(true);
    expect((await consume()).sort()).toEqual(['fast:1', 'slow:1']);
    expect(await consume()).toEqual([]);
  });

  it('skips every ready event when nobody listens, and only those', async () => {
    await handle.db.insertInto('job_events').values(event('skipped', 1)).execute();
    const reader = createOutboxReader(handle.db, 'test-consumer');
    expect(await reader.hasNew()).toBe(true);
    await reader.skipAll();
    expect(await reader.hasNew()).toBe(false);
    await handle.db.insertInto('job_events').values(event('after', 1)).execute();
    expect(await consume()).toEqual(['after:1']);
  });
});
