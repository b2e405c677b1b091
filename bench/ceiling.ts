import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { createDatabase, migrateToLatest, type DatabaseHandle } from '../src/config/database.js';
import { AfterCommit, planClaim, planInsert } from '../src/engine/changes.js';
import { completeMany } from '../src/engine/bullmq/completions.js';
import { applyActivations, applyPlan, insertPending, lockRows, type PgWriteContext } from '../src/engine/bullmq/store.js';
import { newLeaseToken } from '../src/engine/bullmq/tickets.js';
import { EmbeddedEngine } from '../src/engine/embedded/engine.js';
import type { NewJob } from '../src/engine/types.js';
import { systemClock } from '../src/utils/clock.js';
import { newId } from '../src/utils/ids.js';
import { bullmqVersion, JOBS, measureBullmq, median, rate, ROUNDS, WARM_UP } from './throughput.js';

/**
 * What the job records alone cost, with no HTTP, no handlers and no events delivered: the upper
 * bound of what the throughput benchmarks can reach on this machine, next to raw BullMQ in the
 * same run. Each store takes 20,000 jobs through the engine's own statements, one step after
 * another on one connection:
 *  - embedded: `addJobs` in batches of 1,000, then `claimJobs` of 100 and their `completeJob`s;
 *  - PostgreSQL (distributed mode's records): the BullMQ engine's inserts of 1,000 jobs, then
 *    its claim (lock, activate) and `completeMany` of 50, each with its event rows. Dispatch
 *    through Redis is left out, so this is PostgreSQL's part only. PostgreSQL's own CPU time
 *    (every `postgres` process on the machine: backends, WAL writer, autovacuum) is read from
 *    /proc and printed per job.
 * Raw BullMQ's CPU per job (redis-server and this process, which runs its Queue and Worker) is
 * measured too, to show how much CPU per job distributed mode would have at 0.7× BullMQ.
 */
const POSTGRES_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const ADD_BATCH = 1_000;
const EMBEDDED_CLAIM = 100;
const POSTGRES_CLAIM = 50;

interface StoreRun {
  jobsPerSecond: number;
  /** PostgreSQL's CPU time per job (µs); undefined for SQLite, which runs in this process. */
  storeCpuUs?: number;
}

export async function run(): Promise<void> {
  await measureBullmq(WARM_UP);
  const bullmq: number[] = [];
  const bullmqCpu: number[] = [];
  const embedded: StoreRun[] = [];
  const postgres: StoreRun[] = [];
  const postgresUp = await reachable();
  for (let round = 0; round < ROUNDS; round += 1) {
    const redisBefore = processCpuMs('redis-server');
    const clientBefore = process.cpuUsage();
    bullmq.push(rate(await measureBullmq(JOBS)));
    const client = process.cpuUsage(clientBefore);
    bullmqCpu.push(((processCpuMs('redis-server') - redisBefore) * 1000 + client.user + client.system) / JOBS);
    embedded.push(await measureEmbedded());
    if (postgresUp) postgres.push(await measurePostgres());
  }
  const bullmqRate = median(bullmq);
  const dispatchUs = median(bullmqCpu);
  const cores = availableParallelism();
  const line = (runs: StoreRun[]) => {
    const rates = runs.map((r) => r.jobsPerSecond);
    return `${median(rates).toFixed(0)} jobs/s (runs: ${rates.map((r) => r.toFixed(0)).join(', ')}), ${(median(rates) / bullmqRate).toFixed(2)}× BullMQ`;
  };
  console.log(`${JOBS} jobs per run; median of ${ROUNDS} interleaved runs`);
  console.log(`raw BullMQ ${bullmqVersion()}, addBulk + one Worker at concurrency 50: ${bullmqRate.toFixed(0)} jobs/s (runs: ${bullmq.map((r) => r.toFixed(0)).join(', ')})`);
  console.log(`raw BullMQ's CPU per job (Redis and its client process): ${dispatchUs.toFixed(0)} µs, ${((dispatchUs * bullmqRate) / 1e6).toFixed(1)} of ${cores} cores busy`);
  console.log(`embedded engine alone (SQLite, synchronous=NORMAL; add, claim, complete; no HTTP, no handler): ${line(embedded)}`);
  if (!postgresUp) {
    console.log('PostgreSQL records: skipped (PostgreSQL unreachable at 127.0.0.1:5432)');
    return;
  }
  const cpu = median(postgres.map((r) => r.storeCpuUs ?? Number.NaN));
  const budget = (cores * 1e6) / (0.7 * bullmqRate);
  console.log(`PostgreSQL records alone (insert, claim, complete with events; no Redis, no HTTP): ${line(postgres)}`);
  console.log(`PostgreSQL's CPU per job: ${cpu.toFixed(0)} µs`);
  console.log(
    `distributed mode at 0.7× BullMQ would have ${budget.toFixed(0)} µs of CPU per job on ${cores} cores; ` +
      `PostgreSQL's records (${cpu.toFixed(0)}) and one BullMQ job's dispatch (${dispatchUs.toFixed(0)}) already take ${(cpu + dispatchUs).toFixed(0)}, ` +
      `before the API and the workers run any code`,
  );
}

function newJob(i: number): NewJob {
  return {
    type: 'noop',
    queue: 'default',
    payload: { i },
    priority: 0,
    runAt: null,
    maxAttempts: 3,
    backoff: { type: 'exponential', delay: 1000 },
    timeoutMs: null,
    ttlMs: null,
    idempotencyKey: null,
    singletonKey: null,
    tags: [],
    ownerId: 'bench',
    scheduleId: null,
  };
}

async function measureEmbedded(): Promise<StoreRun> {
  const dir = mkdtempSync(path.join(tmpdir(), 'jobline-ceiling-'));
  const handle = createDatabase({ kind: 'sqlite', file: path.join(dir, 'jobline.db'), synchronous: 'NORMAL' });
  await migrateToLatest(handle.db);
  const engine = new EmbeddedEngine({
    sqlite: handle.sqlite!,
    db: handle.db,
    clock: systemClock,
    logger: pino({ level: 'warn' }),
    retention: { completedMs: 1e12, failedMs: 1e12 },
  });
  try {
    await engine.start();
    const cycle = async (count: number) => {
      for (let start = 0; start < count; start += ADD_BATCH) {
        await engine.addJobs(Array.from({ length: ADD_BATCH }, (_, k) => newJob(start + k)));
      }
      for (let done = 0; done < count; ) {
        const claims = await engine.claimJobs({ queue: 'default', types: ['noop'], limit: EMBEDDED_CLAIM, workerId: 'bench', leaseMs: 30_000 });
        if (claims.length === 0) throw new Error(`embedded: nothing to claim after ${done} of ${count}`);
        const outcomes = await Promise.all(claims.map((claim) => engine.completeJob({ jobId: claim.job.id, token: claim.token }, null)));
        if (outcomes.some((outcome) => !outcome.accepted)) throw new Error('embedded: a completion was refused');
        done += claims.length;
      }
    };
    await cycle(WARM_UP);
    const started = performance.now();
    await cycle(JOBS);
    return { jobsPerSecond: (JOBS / (performance.now() - started)) * 1000 };
  } finally {
    await engine.stop();
    await handle.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measurePostgres(): Promise<StoreRun> {
  const name = `jobline_ceiling_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  await adminQuery(`create database ${name}`);
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  const handle = createDatabase({ kind: 'postgres', url: url.toString() });
  try {
    await migrateToLatest(handle.db);
    await postgresCycle(handle, WARM_UP);
    // The warm-up's dead rows are not left for autovacuum to bill to the measured run.
    await sql`vacuum jobs, job_events`.execute(handle.db);
    const cpuBefore = postgresCpuMs();
    const started = performance.now();
    await postgresCycle(handle, JOBS);
    const elapsed = performance.now() - started;
    return { jobsPerSecond: (JOBS / elapsed) * 1000, storeCpuUs: ((postgresCpuMs() - cpuBefore) * 1000) / JOBS };
  } finally {
    await handle.close();
    await adminQuery(`drop database if exists ${name} with (force)`);
  }
}

async function postgresCycle(handle: DatabaseHandle, count: number): Promise<void> {
  const transact = <T>(fn: (ctx: PgWriteContext) => Promise<T>) =>
    handle.db.transaction().execute(async (trx) => {
      const ctx: PgWriteContext = { trx, now: Date.now(), after: new AfterCommit(), maxCrashes: 3, pending: { jobs: [], tags: [], events: [] } };
      const value = await fn(ctx);
      await insertPending(ctx);
      return value;
    });
  const ids: string[] = [];
  for (let start = 0; start < count; start += ADD_BATCH) {
    const batch = Array.from({ length: ADD_BATCH }, (_, k) => ({ id: newId(), job: newJob(start + k) }));
    ids.push(...batch.map(({ id }) => id));
    await transact(async (ctx) => {
      for (const { id, job } of batch) await applyPlan(ctx, planInsert(id, job, ctx.now));
    });
  }
  for (let start = 0; start < count; start += POSTGRES_CLAIM) {
    const claims = await transact(async (ctx) => {
      const rows = await lockRows(ctx, ids.slice(start, start + POSTGRES_CLAIM));
      const planned = rows.map((row) => planClaim(row, { token: newLeaseToken('bench'), workerId: 'bench', leaseMs: 30_000 }, ctx.now));
      await applyActivations(ctx, planned.map(({ plan }) => plan));
      return planned.flatMap(({ claim }) => (claim ? [claim] : []));
    });
    const { outcomes } = await completeMany(handle.db, Date.now(), claims.map((claim) => ({ jobId: claim.job.id, token: claim.token, result: null })));
    if (outcomes.some((outcome) => !outcome.accepted)) throw new Error('postgres: a completion was refused');
  }
}

function postgresCpuMs(): number {
  return processCpuMs('postgres');
}

/** CPU time (user + system, ms) of every process on this machine whose name starts with `name`. */
function processCpuMs(name: string): number {
  const tick = 10; // USER_HZ is 100 on Linux
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (!stat.slice(stat.indexOf('(') + 1, close).startsWith(name)) continue;
      const fields = stat.slice(close + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) * tick;
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return total;
}

async function reachable(): Promise<boolean> {
  try {
    await adminQuery('select 1');
    return true;
  } catch {
    return false;
  }
}

async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2000 });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
