import path from 'node:path';
import { performance } from 'node:perf_hooks';
import SqliteDatabase from 'better-sqlite3';
import { seedJobs, SPAN_DAYS } from './listingSeed.js';
import { ADMIN, makeBenchDir, runCli, startServer, type RunningServer } from './server.js';
import { percentile } from './stats.js';

const JOBS = 1_000_000;
const REQUESTS = 50;
/** A query slower than this on its warm-up request is timed fewer times, to keep the run short. */
const SLOW_MS = 250;
const SLOW_REQUESTS = 10;
const TARGET_P95_MS = 20;
const DAY_MS = 86_400_000;
const USER = { email: 'user@example.com', password: 'bench-password-2' } as const;
const FAKE_OWNERS = ['00000000-0000-7000-8000-00000000f001', '00000000-0000-7000-8000-00000000f002', '00000000-0000-7000-8000-00000000f003'];
/** Finished jobs are kept for the whole run: retention would otherwise start deleting the older seeded ones. */
const KEEP_FOREVER = String(3650 * DAY_MS);

interface ListQuery {
  label: string;
  params: Record<string, string>;
  as: 'admin' | 'user';
  /** Follow the cursor this many pages first, then time the page it leads to. */
  pagesDeep?: number;
}

interface Timed {
  query: ListQuery;
  url: string;
  timings: number[];
  sqlMs: number;
  plan: string;
}

/**
 * GET /v1/jobs over 1,000,000 seeded jobs: each filter, cursor paging, as an admin (every job)
 * and as a user (own jobs). Client round trips, plus the same SQL alone on a read-only connection.
 */
export async function run(): Promise<void> {
  const dir = makeBenchDir({ queue: 'bench-idle' });
  try {
    const adminId = userId(await runCli(dir, ['user', 'create', '--email', ADMIN.email, '--password', ADMIN.password, '--role', 'admin']));
    const ownId = userId(await runCli(dir, ['user', 'create', '--email', USER.email, '--password', USER.password]));
    const file = path.join(dir.dataDir, 'jobline.db');
    const seeded = seedJobs(file, JOBS, [adminId, adminId, ownId, ...FAKE_OWNERS]);
    console.log(
      `seeded ${seeded.jobs} jobs over ${SPAN_DAYS} days in ${(seeded.loadMs / 1000).toFixed(1)} s + ${(seeded.indexMs / 1000).toFixed(1)} s of index builds`,
    );
    const server = await startServer(dir, { JOBLINE_RETENTION_COMPLETED: KEEP_FOREVER, JOBLINE_RETENTION_FAILED: KEEP_FOREVER });
    const db = new SqliteDatabase(file, { readonly: true });
    try {
      const login = await server.api<{ accessToken: string }>('POST', '/v1/auth/login', USER, 200);
      const tokens = { admin: server.token, user: login.accessToken };
      const results: Timed[] = [];
      for (const query of queries(seeded.now)) {
        const timed = await timeQuery(server, db, tokens[query.as], query, query.as === 'user' ? ownId : undefined);
        results.push(timed);
        console.log(resultLine(timed));
      }
      console.log(await timeQueueCounts(server));
      const missed = results.filter((result) => p95(result) >= TARGET_P95_MS);
      console.log(
        `target p95 < ${TARGET_P95_MS} ms: ${missed.length === 0 ? 'met by every query' : `MISSED by ${missed.length} of ${results.length} queries`}`,
      );
      for (const result of missed) console.log(`  missed: ${result.query.label}: p95=${p95(result).toFixed(1)} ms; plan: ${result.plan}`);
    } finally {
      db.close();
      await server.stop();
    }
  } finally {
    dir.remove();
  }
}

function queries(now: number): ListQuery[] {
  const iso = (ms: number) => new Date(ms).toISOString();
  const midpoint = now - (SPAN_DAYS / 2) * DAY_MS;
  return [
    { label: 'no filter', params: {}, as: 'admin' },
    { label: 'state=completed', params: { state: 'completed' }, as: 'admin' },
    { label: 'state=failed', params: { state: 'failed' }, as: 'admin' },
    { label: 'queue=emails', params: { queue: 'emails' }, as: 'admin' },
    { label: 'queue=billing (0.1% of jobs)', params: { queue: 'billing' }, as: 'admin' },
    { label: 'type=report.build', params: { type: 'report.build' }, as: 'admin' },
    { label: 'type=audit.export (1% of jobs)', params: { type: 'audit.export' }, as: 'admin' },
    { label: 'type=no.such.type (no match)', params: { type: 'no.such.type' }, as: 'admin' },
    { label: 'tag=tenant:acme (30% of jobs)', params: { tag: 'tenant:acme' }, as: 'admin' },
    { label: 'tag=vip (0.1% of jobs)', params: { tag: 'vip' }, as: 'admin' },
    { label: 'state=completed&queue=emails', params: { state: 'completed', queue: 'emails' }, as: 'admin' },
    { label: 'createdAfter/createdBefore (one day, mid-range)', params: { createdAfter: iso(midpoint), createdBefore: iso(midpoint + DAY_MS) }, as: 'admin' },
    { label: 'cursor, page 5 (no filter)', params: {}, as: 'admin', pagesDeep: 4 },
    { label: 'cursor, page 5 (state=completed)', params: { state: 'completed' }, as: 'admin', pagesDeep: 4 },
    { label: 'cursor, page 5 (state=completed&queue=emails)', params: { state: 'completed', queue: 'emails' }, as: 'admin', pagesDeep: 4 },
    { label: 'cursor mid-range, ~500k jobs in (no filter)', params: { createdBefore: iso(midpoint) }, as: 'admin', pagesDeep: -1 },
    { label: 'as a user (own jobs), no filter', params: {}, as: 'user' },
    { label: 'as a user (own jobs), state=failed', params: { state: 'failed' }, as: 'user' },
  ];
}

async function timeQuery(server: RunningServer, db: SqliteDatabase.Database, token: string, query: ListQuery, ownerId: string | undefined): Promise<Timed> {
  const params = { ...query.params };
  let cursor: string | undefined;
  if (query.pagesDeep === -1) {
    // A cursor from the middle of the listing: the first page before the midpoint, then no date filter.
    cursor = (await list(server, token, params)).nextCursor ?? undefined;
    delete params.createdBefore;
  }
  for (let page = 0; page < (query.pagesDeep ?? 0); page += 1) {
    cursor = (await list(server, token, { ...params, ...(cursor ? { cursor } : {}) })).nextCursor ?? undefined;
    if (!cursor) throw new Error(`${query.label}: no page ${page + 2}`);
  }
  if (cursor) params.cursor = cursor;
  const url = `/v1/jobs?${new URLSearchParams(params).toString()}`;
  const warmUp = performance.now();
  await server.apiAs(token, 'GET', url);
  const rounds = performance.now() - warmUp > SLOW_MS ? SLOW_REQUESTS : REQUESTS;
  const timings: number[] = [];
  for (let i = 0; i < rounds; i += 1) {
    const started = performance.now();
    const page = await server.apiAs<{ items: unknown[] }>(token, 'GET', url);
    timings.push(performance.now() - started);
    if (!Array.isArray(page.items)) throw new Error(`${query.label}: no items`);
  }
  const { sqlMs, plan } = sqlAlone(db, params, ownerId);
  return { query, url, timings, sqlMs, plan };
}

async function list(server: RunningServer, token: string, params: Record<string, string>) {
  return server.apiAs<{ items: unknown[]; nextCursor: string | null }>(token, 'GET', `/v1/jobs?${new URLSearchParams(params).toString()}`);
}

/** The listing's SQL as the engine builds it (see src/engine/records.ts), timed and explained on its own. */
function sqlAlone(db: SqliteDatabase.Database, params: Record<string, string>, ownerId: string | undefined): { sqlMs: number; plan: string } {
  const where: string[] = [];
  const values: (string | number)[] = [];
  const add = (clause: string, ...args: (string | number)[]) => {
    where.push(clause);
    values.push(...args);
  };
  if (ownerId !== undefined) add('"owner_id" = ?', ownerId);
  if (params.state) add(`"state" in (${params.state.split(',').map(() => '?').join(', ')})`, ...params.state.split(','));
  if (params.queue) add('"queue" = ?', params.queue);
  if (params.type) add('"type" = ?', params.type);
  if (params.tag) add('"id" in (select "job_id" from "job_tags" where "tag" = ?)', params.tag);
  if (params.createdAfter) add('"created_at" > ?', Date.parse(params.createdAfter));
  if (params.createdBefore) add('"created_at" < ?', Date.parse(params.createdBefore));
  if (params.cursor) {
    // Opaque to clients; decoded here only to reproduce the query.
    const [, createdAt, id] = JSON.parse(Buffer.from(params.cursor, 'base64url').toString('utf8')) as [string, number, string];
    add('("created_at" < ? or ("created_at" = ? and "id" < ?))', createdAt, createdAt, id);
  }
  const text = `select * from "jobs"${where.length > 0 ? ` where ${where.join(' and ')}` : ''} order by "created_at" desc, "id" desc limit ?`;
  values.push(51);
  const statement = db.prepare(text);
  const timings: number[] = [];
  for (let i = 0; i < 5; i += 1) {
    const started = performance.now();
    statement.all(...values);
    timings.push(performance.now() - started);
  }
  const plan = (db.prepare(`explain query plan ${text}`).all(...values) as { detail: string }[]).map((row) => row.detail).join('; ');
  return { sqlMs: percentile(timings.sort((a, b) => a - b), 50), plan };
}

async function timeQueueCounts(server: RunningServer): Promise<string> {
  const timings: number[] = [];
  for (let i = 0; i < 10; i += 1) {
    const started = performance.now();
    await server.api('GET', '/v1/admin/queues');
    timings.push(performance.now() - started);
  }
  const sorted = timings.sort((a, b) => a - b);
  return `(also) GET /v1/admin/queues over ${JOBS} jobs: n=${sorted.length} p50=${percentile(sorted, 50).toFixed(1)} ms p95=${percentile(sorted, 95).toFixed(1)} ms`;
}

const p95 = (result: Timed) => percentile([...result.timings].sort((a, b) => a - b), 95);

function resultLine(result: Timed): string {
  const sorted = [...result.timings].sort((a, b) => a - b);
  const verdict = p95(result) < TARGET_P95_MS ? 'ok' : 'MISSED';
  return (
    `${result.query.label}: n=${sorted.length} p50=${percentile(sorted, 50).toFixed(1)} ms p95=${percentile(sorted, 95).toFixed(1)} ms ` +
    `max=${(sorted.at(-1) ?? Number.NaN).toFixed(1)} ms ` +
    `(SQL alone p50=${result.sqlMs.toFixed(2)} ms) ${verdict}`
  );
}

function userId(cliOutput: string): string {
  const match = /created \w+ \S+ \(([0-9a-f-]{36})\)/.exec(cliOutput);
  if (!match?.[1]) throw new Error(`no user id in: ${cliOutput}`);
  return match[1];
}
