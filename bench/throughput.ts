import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import SqliteDatabase from 'better-sqlite3';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { makeBenchDir, ROOT, sleep, startServer, type QueueInfo, type RunningServer } from './server.js';

export const JOBS = 20_000;
const CHUNK = 1_000;
const POLL_MS = 20;
const TIMEOUT_MS = 120_000;
export const BULLMQ_CONCURRENCY = 50;
const REDIS = { host: '127.0.0.1', port: 6379 };
export const ROUNDS = 3;
/** Jobs run first (and not measured) so that both sides are measured with warm JIT, as a long-running server would be. */
export const WARM_UP = 2_000;

export interface Measurement {
  /** First submission sent → last bulk request answered. */
  submitMs: number;
  /** First submission sent → every job completed. */
  totalMs: number;
}

export const rate = (m: Measurement) => (JOBS / m.totalMs) * 1000;

export interface Series {
  label: string;
  runs: Measurement[];
}

/**
 * 20,000 no-op jobs submitted in bulk until all are completed: Jobline (SQLite synchronous
 * NORMAL and FULL, handler concurrency 50 and 100, a fresh server each) against raw BullMQ on the
 * local Redis (addBulk in chunks of 1,000, one Worker at concurrency 50). Each runs ROUNDS times,
 * interleaved (the machine is shared), after a warm-up, and they are compared by median.
 */
export async function run(): Promise<void> {
  const bullmq: Series = { label: `BullMQ ${bullmqVersion()} on Redis (no persistence configured), worker concurrency ${BULLMQ_CONCURRENCY}`, runs: [] };
  const jobline: (Series & { synchronous: 'NORMAL' | 'FULL'; concurrency: number })[] = [];
  for (const synchronous of ['NORMAL', 'FULL'] as const) {
    for (const concurrency of [50, 100]) {
      jobline.push({ label: `Jobline synchronous=${synchronous}, handler concurrency ${concurrency}`, synchronous, concurrency, runs: [] });
    }
  }
  await measureBullmq(WARM_UP);
  for (let round = 0; round < ROUNDS; round += 1) {
    bullmq.runs.push(await measureBullmq(JOBS));
    for (const series of jobline) series.runs.push(await measureJobline(series.synchronous, series.concurrency));
  }
  const bullmqRate = median(bullmq.runs.map(rate));
  console.log(`${JOBS} jobs per run, after ${WARM_UP} warm-up jobs (per Jobline server; once for BullMQ); median of ${ROUNDS} interleaved runs`);
  console.log(seriesLine(bullmq));
  for (const series of jobline) console.log(`${seriesLine(series)}; Jobline/BullMQ=${(median(series.runs.map(rate)) / bullmqRate).toFixed(2)}×`);
  for (const synchronous of ['NORMAL', 'FULL'] as const) {
    const ranked = jobline.filter((series) => series.synchronous === synchronous).sort((x, y) => median(y.runs.map(rate)) - median(x.runs.map(rate)));
    const best = ranked[0]!;
    const ratio = median(best.runs.map(rate)) / bullmqRate;
    console.log(`best ${synchronous}: concurrency ${best.concurrency}, ${ratio.toFixed(2)}× BullMQ (target ≥ 3×: ${ratio >= 3 ? 'met' : 'MISSED'})`);
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function seriesLine(series: Series): string {
  const rates = series.runs.map(rate);
  return (
    `${series.label}: ${median(rates).toFixed(0)} jobs/s (runs: ${rates.map((r) => r.toFixed(0)).join(', ')}; ` +
    `median ${median(series.runs.map((m) => m.totalMs)).toFixed(0)} ms to all completed, ` +
    `submissions done after ${median(series.runs.map((m) => m.submitMs)).toFixed(0)} ms)`
  );
}

export function bulkBodies(count: number): string[] {
  const bodies: string[] = [];
  for (let start = 0; start < count; start += CHUNK) {
    bodies.push(JSON.stringify({ jobs: Array.from({ length: CHUNK }, (_, k) => ({ type: 'noop', payload: { i: start + k } })) }));
  }
  return bodies;
}

async function measureJobline(synchronous: 'NORMAL' | 'FULL', concurrency: number): Promise<Measurement> {
  const dir = makeBenchDir({ concurrency });
  try {
    const server = await startServer(dir, { JOBLINE_SQLITE_SYNCHRONOUS: synchronous });
    let measurement: Measurement;
    try {
      await submitAndWait(server, bulkBodies(WARM_UP), WARM_UP);
      measurement = await measureSubmissions(server, bulkBodies(JOBS), WARM_UP + JOBS, `sync=${synchronous}, concurrency=${concurrency}`);
    } finally {
      await server.stop();
    }
    checkStored(path.join(dir.dataDir, 'jobline.db'));
    return measurement;
  } finally {
    dir.remove();
  }
}

/**
 * Sends the bulk bodies one after another and, meanwhile, waits until the default queue counts
 * `completed` completed jobs. Counting (`GET /v1/admin/queues`) reads every job's index entry,
 * about 2.5 ms at 40,000 jobs in SQLite: asked every 20 ms, that alone would take a tenth of the
 * server's time from the jobs it measures. So until the last job submitted has completed, the
 * bench asks only for that job (`GET /v1/jobs/:id`, one row); jobs run about in submission
 * order, so few are left then, and counting every `pollMs` finishes the wait.
 * `label` names the run in a timeout error.
 */
export async function measureSubmissions(server: RunningServer, bodies: string[], completed: number, label: string, pollMs = POLL_MS): Promise<Measurement> {
  const started = performance.now();
  let submitMs = Number.NaN;
  let lastJobId: string | undefined;
  // One bulk request at a time, as a client would, while the server already works through them.
  const submitting = (async () => {
    for (const body of bodies) {
      const response = await fetch(`${server.baseUrl}/v1/jobs/bulk`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
        body,
      });
      const text = await response.text();
      if (response.status !== 201) throw new Error(`POST /v1/jobs/bulk answered ${response.status}: ${text.slice(0, 500)}`);
      lastJobId = (JSON.parse(text) as { jobs: { id: string }[] }).jobs.at(-1)?.id;
    }
    submitMs = performance.now() - started;
  })();
  let submitError: unknown;
  submitting.catch((error: unknown) => (submitError = error));
  const timedOut = (counts: unknown) => {
    if (performance.now() - started > TIMEOUT_MS) throw new Error(`not all jobs completed within ${TIMEOUT_MS} ms (${label}): ${JSON.stringify(counts)}`);
  };
  for (;;) {
    if (submitError) throw submitError;
    if (!Number.isNaN(submitMs) && lastJobId !== undefined) {
      const last = await server.api<{ state: string }>('GET', `/v1/jobs/${lastJobId}`);
      if (last.state !== 'queued' && last.state !== 'scheduled' && last.state !== 'active') break;
      timedOut({ lastJob: last.state });
    } else {
      timedOut({ submitting: true });
    }
    await sleep(pollMs);
  }
  let last: QueueInfo | undefined;
  for (;;) {
    const queues = await server.api<QueueInfo[]>('GET', '/v1/admin/queues');
    last = queues.find((queue) => queue.name === 'default');
    if (last && last.counts.completed >= completed) break;
    if (last && last.counts.failed > 0) throw new Error(`jobs failed: ${JSON.stringify(last.counts)}`);
    timedOut(last?.counts);
    await sleep(pollMs);
  }
  const measurement = { submitMs, totalMs: performance.now() - started };
  await submitting;
  return measurement;
}

/** Submits the bodies one after another, then waits until `completed` jobs are completed (the warm-up). */
export async function submitAndWait(server: RunningServer, bodies: string[], completed: number): Promise<void> {
  for (const body of bodies) await server.api('POST', '/v1/jobs/bulk', JSON.parse(body) as unknown, 201);
  const started = performance.now();
  for (;;) {
    const queues = await server.api<QueueInfo[]>('GET', '/v1/admin/queues');
    const counts = queues.find((queue) => queue.name === 'default')?.counts;
    if (counts && counts.completed >= completed) return;
    if (performance.now() - started > TIMEOUT_MS) throw new Error(`warm-up jobs not completed within ${TIMEOUT_MS} ms: ${JSON.stringify(counts)}`);
    await sleep(POLL_MS);
  }
}

/** After the server stopped: every job is in the SQLite file as completed, with its events. */
function checkStored(file: string): void {
  const db = new SqliteDatabase(file, { readonly: true });
  try {
    const completed = db.prepare(`select count(*) as n from jobs where state = 'completed'`).get() as { n: number };
    const events = db.prepare(`select count(*) as n from job_events where type = 'job.completed'`).get() as { n: number };
    if (completed.n !== WARM_UP + JOBS || events.n !== WARM_UP + JOBS) {
      throw new Error(`SQLite holds ${completed.n} completed jobs and ${events.n} job.completed events, expected ${WARM_UP + JOBS}`);
    }
  } finally {
    db.close();
  }
}

export async function measureBullmq(jobs: number): Promise<Measurement> {
  const prefix = `jlbench-${randomBytes(6).toString('hex')}`;
  const queueConnection = new Redis({ ...REDIS, maxRetriesPerRequest: null });
  const workerConnection = new Redis({ ...REDIS, maxRetriesPerRequest: null });
  const queue = new Queue('throughput', { connection: queueConnection, prefix });
  let completed = 0;
  let allDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allDone = resolve));
  const worker = new Worker('throughput', async () => null, { connection: workerConnection, prefix, concurrency: BULLMQ_CONCURRENCY });
  worker.on('completed', () => {
    completed += 1;
    if (completed === jobs) allDone();
  });
  let failure: Error | undefined;
  worker.on('failed', (_job, error) => (failure ??= error));
  try {
    await Promise.all([queue.waitUntilReady(), worker.waitUntilReady()]);
    const chunks: { name: string; data: { i: number } }[][] = [];
    for (let start = 0; start < jobs; start += CHUNK) {
      chunks.push(Array.from({ length: CHUNK }, (_, k) => ({ name: 'noop', data: { i: start + k } })));
    }
    const started = performance.now();
    for (const chunk of chunks) await queue.addBulk(chunk);
    const submitMs = performance.now() - started;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`BullMQ: ${completed}/${jobs} completed after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    });
    await Promise.race([done, timedOut]).finally(() => clearTimeout(timer));
    if (failure) throw failure;
    return { submitMs, totalMs: performance.now() - started };
  } finally {
    await worker.close();
    await queue.close();
    await deleteKeys(queueConnection, `${prefix}:*`);
    await Promise.all([queueConnection.quit(), workerConnection.quit()]);
  }
}

export async function deleteKeys(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

export function bullmqVersion(): string {
  const manifest = JSON.parse(readFileSync(path.join(ROOT, 'node_modules/bullmq/package.json'), 'utf8')) as { version: string };
  return manifest.version;
}
