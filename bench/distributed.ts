import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Redis } from 'ioredis';
import { makeBenchDir, startServer, type RunningServer } from './server.js';
import {
  BULLMQ_CONCURRENCY,
  bulkBodies,
  bullmqVersion,
  deleteKeys,
  JOBS,
  measureBullmq,
  measureSubmissions,
  median,
  rate,
  ROUNDS,
  seriesLine,
  submitAndWait,
  WARM_UP,
  type Measurement,
  type Series,
} from './throughput.js';

const POSTGRES_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = 'redis://127.0.0.1:6379';
/**
 * Deployments measured: handler concurrency per worker process as the one raw BullMQ worker's,
 * and higher (a Jobline worker waits on PostgreSQL and Redis round trips between jobs, so more
 * slots keep it busy); then two worker processes.
 */
const DEPLOYMENTS = [
  { workers: 1, concurrency: BULLMQ_CONCURRENCY },
  { workers: 1, concurrency: 200 },
  { workers: 2, concurrency: 200 },
] as const;
/** After SIGTERM, how long a process may take to exit before SIGKILL. */
const KILL_AFTER_MS = 10_000;
const TARGET = 0.7;

/**
 * 20,000 no-op jobs submitted in bulk until all are completed, in distributed mode (PostgreSQL and
 * BullMQ on the local Redis): one api process with one, then two worker processes, each run on a
 * fresh database and Redis prefix, against raw BullMQ on the same Redis (addBulk in chunks of
 * 1,000, one Worker at concurrency 50). Interleaved rounds after a warm-up, compared by median.
 */
export async function run(): Promise<void> {
  const bullmq: Series = { label: `BullMQ ${bullmqVersion()} on the same Redis, one Worker at concurrency ${BULLMQ_CONCURRENCY}`, runs: [] };
  const jobline = DEPLOYMENTS.map((deployment) => ({
    label: `Jobline distributed, 1 api + ${deployment.workers} worker process${deployment.workers === 1 ? '' : 'es'} (handler concurrency ${deployment.concurrency} each)`,
    ...deployment,
    runs: [] as Measurement[],
  }));
  await measureBullmq(WARM_UP);
  for (let round = 0; round < ROUNDS; round += 1) {
    bullmq.runs.push(await measureBullmq(JOBS));
    for (const series of jobline) series.runs.push(await measureDistributed(series.workers, series.concurrency));
  }
  const bullmqRate = median(bullmq.runs.map(rate));
  console.log(
    `${JOBS} jobs per run, after ${WARM_UP} warm-up jobs (per Jobline deployment; once for BullMQ); median of ${ROUNDS} interleaved runs; ` +
      'each Jobline run on a fresh PostgreSQL database and Redis prefix',
  );
  console.log(seriesLine(bullmq));
  for (const series of jobline) console.log(`${seriesLine(series)}; Jobline/BullMQ=${(median(series.runs.map(rate)) / bullmqRate).toFixed(2)}×`);
  const [same, more, two] = jobline.map((series) => median(series.runs.map(rate)));
  const best = Math.max(same!, more!) / bullmqRate;
  console.log(`1 worker process, best concurrency: ${best.toFixed(2)}× BullMQ (target ≥ ${TARGET}×: ${best >= TARGET ? 'met' : 'MISSED'})`);
  console.log(`2 worker processes: ${(two! / more!).toFixed(2)}× the rate with 1 at the same concurrency`);
}

/** One measurement on a deployment of its own: a fresh database and prefix, removed afterwards whatever happens. */
async function measureDistributed(workerCount: number, concurrency: number): Promise<Measurement> {
  const id = randomBytes(6).toString('hex');
  const databaseName = `jobline_bench_${id}`;
  const redisPrefix = `jlbench:${id}:`;
  const databaseUrl = new URL(POSTGRES_ADMIN_URL);
  databaseUrl.pathname = `/${databaseName}`;
  const dir = makeBenchDir({ concurrency });
  const processes: RunningServer[] = [];
  try {
    await adminQuery(`create database ${databaseName}`);
    const shared = {
      JOBLINE_DATABASE_URL: databaseUrl.toString(),
      JOBLINE_REDIS_URL: REDIS_URL,
      JOBLINE_REDIS_PREFIX: redisPrefix,
      JOBLINE_JWT_SECRET: randomBytes(32).toString('hex'),
    };
    // The api first: it runs the migrations and creates the admin the bench logs in as.
    const api = await startServer(dir, { ...shared, JOBLINE_ROLE: 'api' }, [], { killAfterMs: KILL_AFTER_MS });
    processes.push(api);
    for (let k = 0; k < workerCount; k += 1) {
      // An empty variable counts as unset: workers get no admin to create.
      const workerEnv = { ...shared, JOBLINE_ROLE: 'worker', JOBLINE_ADMIN_EMAIL: '', JOBLINE_ADMIN_PASSWORD: '' };
      processes.push(await startServer(dir, workerEnv, [], { login: false, killAfterMs: KILL_AFTER_MS }));
    }
    let measurement: Measurement;
    try {
      await submitAndWait(api, bulkBodies(WARM_UP), WARM_UP);
      measurement = await measureSubmissions(api, bulkBodies(JOBS), WARM_UP + JOBS, `distributed, ${workerCount} worker process(es)`);
    } catch (error) {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n${outputTails(processes)}`, { cause: error });
    }
    await Promise.all(processes.map((child) => child.stop()));
    await checkStored(databaseUrl.toString());
    return measurement;
  } finally {
    await Promise.all(processes.map((child) => child.stop()));
    dir.remove();
    await adminQuery(`drop database if exists ${databaseName} with (force)`);
    const redis = new Redis(REDIS_URL);
    try {
      await deleteKeys(redis, `${redisPrefix}*`);
    } finally {
      await redis.quit();
    }
  }
}

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** After the processes stopped: every job is in PostgreSQL as completed, with its job.completed event. */
async function checkStored(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const completed = await client.query<{ n: number }>(`select count(*)::int as n from jobs where state = 'completed'`);
    const events = await client.query<{ n: number }>(`select count(*)::int as n from job_events where type = 'job.completed'`);
    const [jobs, completions] = [completed.rows[0]?.n, events.rows[0]?.n];
    if (jobs !== WARM_UP + JOBS || completions !== WARM_UP + JOBS) {
      throw new Error(`PostgreSQL holds ${jobs} completed jobs and ${completions} job.completed events, expected ${WARM_UP + JOBS}`);
    }
  } finally {
    await client.end();
  }
}

function outputTails(processes: RunningServer[]): string {
  return processes.map((child) => `--- pid ${child.pid}:\n${child.output().slice(-2000)}`).join('\n');
}
