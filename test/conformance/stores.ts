import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createDatabase, migrateToLatest, type DatabaseHandle } from '../../src/config/database.js';
import { completeMany } from '../../src/engine/bullmq/completions.js';
import * as pgStore from '../../src/engine/bullmq/store.js';
import { AfterCommit, planCompletion, type EventRow, type Plan } from '../../src/engine/changes.js';
import * as sqliteStore from '../../src/engine/embedded/store.js';
import { prepareStatements } from '../../src/engine/embedded/statements.js';
import type { JobRow } from '../../src/engine/rows.js';
import type { NewJob, Outcome } from '../../src/engine/types.js';
import { createTestDatabase, testDatabases } from '../helpers/postgres.js';

/**
 * The two stores the engines keep jobs in, each driven by its engine's own plan application
 * (embedded/store.ts on SQLite, bullmq/store.ts on PostgreSQL), behind one face so a suite can
 * apply the same plans to both and compare what they stored.
 */
export interface StoreUnderTest {
  name: 'sqlite' | 'postgres';
  /** Applies the plans in one transaction; returns what it left to do after commit. */
  apply(plans: Plan[], options?: { activations?: boolean }): Promise<AfterCommit>;
  row(id: string): Promise<JobRow | undefined>;
  events(id: string): Promise<EventRow[]>;
  tags(id: string): Promise<string[]>;
  /** Completes held jobs as the store's engine does for completions arriving together. */
  completeBatch(items: { jobId: string; token: string; result: unknown }[], now: number): Promise<Outcome[]>;
  /** The stored rows the store's engine reads to deduplicate these submissions. */
  dedupCandidates(jobs: NewJob[]): Promise<JobRow[]>;
  close(): Promise<void>;
}

async function sqlite(): Promise<StoreUnderTest> {
  const dir = mkdtempSync(path.join(tmpdir(), 'jobline-stores-'));
  const handle = createDatabase({ kind: 'sqlite', file: path.join(dir, 'jobline.db'), synchronous: 'NORMAL' });
  await migrateToLatest(handle.db);
  const st = prepareStatements(handle.sqlite!);
  return {
    name: 'sqlite',
    apply: async (plans) => {
      const ctx: sqliteStore.WriteContext = { st, now: Date.now(), after: new AfterCommit(), maxCrashes: 3 };
      handle.sqlite!.transaction(() => plans.forEach((plan) => sqliteStore.applyPlan(ctx, plan))).immediate();
      return ctx.after;
    },
    ...reads(handle),
    // The embedded engine plans each completion on the row it reads, all in one transaction.
    completeBatch: async (items, now) => {
      const ctx: sqliteStore.WriteContext = { st, now, after: new AfterCommit(), maxCrashes: 3 };
      return handle.sqlite!.transaction(() =>
        items.map((item) => {
          const { plan, outcome } = planCompletion(st.jobById.get(item.jobId), item.token, item.result, now);
          sqliteStore.applyIfAny(ctx, plan);
          return outcome;
        }),
      ).immediate();
    },
    dedupCandidates: async (jobs) => jobs.flatMap((job) => sqliteStore.dedupCandidates(st, job)),
    close: async () => {
      await handle.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgres(): Promise<StoreUnderTest> {
  const database = await createTestDatabase();
  const handle = createDatabase({ kind: 'postgres', url: database.url });
  await migrateToLatest(handle.db);
  const transact = <T>(fn: (ctx: pgStore.PgWriteContext) => Promise<T>) =>
    handle.db.transaction().execute(async (trx) => {
      const ctx: pgStore.PgWriteContext = { trx, now: Date.now(), after: new AfterCommit(), maxCrashes: 3, pending: { jobs: [], tags: [], events: [] } };
      const value = await fn(ctx);
      await pgStore.insertPending(ctx);
      return value;
    });
  return {
    name: 'postgres',
    apply: (plans, options = {}) =>
      transact(async (ctx) => {
        // A claim's activations go through the engine's multi-row statement, as claimJobs writes them.
        if (options.activations) await pgStore.applyActivations(ctx, plans);
        else for (const plan of plans) await pgStore.applyPlan(ctx, plan);
        return ctx.after;
      }),
    ...reads(handle),
    // The BullMQ engine writes a batch of completions as one statement.
    completeBatch: async (items, now) => (await completeMany(handle.db, now, items)).outcomes,
    dedupCandidates: (jobs) => transact((ctx) => pgStore.dedupCandidates(ctx, jobs)),
    close: async () => {
      await handle.close();
      await database.drop();
    },
  };
}

function reads(handle: DatabaseHandle): Pick<StoreUnderTest, 'row' | 'events' | 'tags'> {
  return {
    row: (id) => handle.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst(),
    events: (id) =>
      handle.db
        .selectFrom('job_events')
        .select(['job_id', 'seq', 'seq_end', 'type', 'at', 'data'])
        .where('job_id', '=', id)
        .orderBy('seq')
        .execute() as Promise<EventRow[]>,
    tags: async (id) => (await handle.db.selectFrom('job_tags').select('tag').where('job_id', '=', id).orderBy('tag').execute()).map((row) => row.tag),
  };
}

/** Every store: PostgreSQL when reachable (always under CI=true, where its absence fails). */
export const stores: { name: 'sqlite' | 'postgres'; open: () => Promise<StoreUnderTest> }[] = (await testDatabases()).map((name) => ({
  name,
  open: name === 'sqlite' ? sqlite : postgres,
}));
