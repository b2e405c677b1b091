import { randomBytes } from 'node:crypto';
import SqliteDatabase from 'better-sqlite3';

/**
 * Fills a migrated (and stopped) Jobline SQLite file with jobs spread over queues, types, states,
 * tags, owners and 30 days, the way the embedded engine stores them: one row per job and its
 * `job.created` event (seq 1), plus a `job_tags` row per tag. Indexes are dropped during the load
 * and rebuilt from their own SQL.
 */

const DAY_MS = 86_400_000;
export const SPAN_DAYS = 30;

type Weighted<T> = readonly (readonly [T, number])[];

export const QUEUES: Weighted<string> = [
  ['default', 0.5],
  ['emails', 0.25],
  ['media', 0.15],
  ['reports', 0.099],
  ['billing', 0.001],
];
/** None of these has a handler in the benchmark server, so nothing claims the seeded jobs. */
export const TYPES: Weighted<string> = [
  ['email.send', 0.4],
  ['image.resize', 0.25],
  ['report.build', 0.2],
  ['crm.sync', 0.14],
  ['audit.export', 0.01],
];
/** Each tag independently, with this probability. */
export const TAGS: Weighted<string> = [
  ['tenant:acme', 0.3],
  ['tenant:globex', 0.2],
  ['urgent', 0.1],
  ['batch', 0.05],
  ['vip', 0.001],
];
/** Older than a day: finished. The last day: mostly a backlog. */
const OLD_STATES: Weighted<string> = [
  ['completed', 0.9],
  ['failed', 0.06],
  ['cancelled', 0.04],
];
const RECENT_STATES: Weighted<string> = [
  ['queued', 0.6],
  ['completed', 0.35],
  ['failed', 0.03],
  ['scheduled', 0.02],
];

const BACKOFF = JSON.stringify({ type: 'exponential', delay: 1000, maxDelay: 3_600_000, jitter: 0.2 });
const FAILURE = JSON.stringify({ message: 'upstream answered 503', code: 'HTTP_503' });

function pick<T>(options: Weighted<T>, roll: number): T {
  let acc = 0;
  for (const [value, weight] of options) {
    acc += weight;
    if (roll < acc) return value;
  }
  return options.at(-1)![0];
}

/** A UUIDv7 for a given millisecond, as the server makes them (time-ordered). */
function uuidV7(ms: number, random: Buffer, offset: number): string {
  const time = ms.toString(16).padStart(12, '0');
  const rand = random.toString('hex', offset, offset + 10);
  const variant = (8 | (parseInt(rand[3]!, 16) & 3)).toString(16);
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${rand.slice(0, 3)}-${variant}${rand.slice(4, 7)}-${rand.slice(7, 19)}`;
}

export interface SeedResult {
  jobs: number;
  now: number;
  loadMs: number;
  indexMs: number;
}

export function seedJobs(file: string, count: number, ownerIds: string[]): SeedResult {
  const db = new SqliteDatabase(file);
  try {
    db.pragma('synchronous = OFF');
    db.pragma('cache_size = -262144');
    const indexes = db
      .prepare<[], { name: string; sql: string }>(`select name, sql from sqlite_master where type = 'index' and tbl_name in ('jobs', 'job_events', 'job_tags') and sql is not null`)
      .all();
    for (const { name } of indexes) db.exec(`drop index "${name}"`);

    const insertJob = db.prepare(`
      insert into jobs (id, queue, type, state, priority, payload, result, error, progress, attempts_made, max_attempts,
        crash_count, backoff, timeout_ms, expires_at, idempotency_key, singleton_key, tags, owner_id, schedule_id,
        created_at, run_at, started_at, finished_at, lease_token, lease_expires_at, worker_id, last_seq)
      values (?, ?, ?, ?, ?, ?, ?, ?, null, ?, 3, 0, ?, null, null, null, null, ?, ?, null, ?, ?, ?, ?, null, null, ?, 1)`);
    const insertEvent = db.prepare(`insert into job_events (job_id, seq, type, at, data) values (?, 1, 'job.created', ?, '{}')`);
    const insertTag = db.prepare(`insert into job_tags (tag, created_at, job_id) values (?, ?, ?)`);

    const now = Date.now();
    const start = now - SPAN_DAYS * DAY_MS;
    const step = (SPAN_DAYS * DAY_MS - 60_000) / count;
    const random = randomBytes(count * 10);
    const loadStarted = Date.now();
    const insertBatch = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i += 1) {
        const createdAt = Math.floor(start + (i + Math.random()) * step);
        const id = uuidV7(createdAt, random, i * 10);
        const state = pick(createdAt < now - DAY_MS ? OLD_STATES : RECENT_STATES, Math.random());
        const tags = TAGS.filter(([, p]) => Math.random() < p).map(([tag]) => tag);
        const finished = state === 'completed' || state === 'failed' || state === 'cancelled';
        const ran = state === 'completed' || state === 'failed';
        const runAt = state === 'scheduled' ? now + DAY_MS + Math.floor(Math.random() * 7 * DAY_MS) : createdAt;
        const startedAt = ran ? createdAt + 5 + Math.floor(Math.random() * 500) : null;
        insertJob.run(
          id,
          pick(QUEUES, Math.random()),
          pick(TYPES, Math.random()),
          state,
          Math.random() < 0.1 ? 10 : 0,
          `{"i":${i},"to":"user${i % 5000}@example.com"}`,
          state === 'completed' ? '{"ok":true}' : null,
          state === 'failed' ? FAILURE : null,
          ran ? (state === 'failed' ? 3 : 1) : 0,
          BACKOFF,
          JSON.stringify(tags),
          ownerIds[Math.floor(Math.random() * ownerIds.length)]!,
          createdAt,
          runAt,
          startedAt,
          finished ? (startedAt ?? createdAt) + Math.floor(Math.random() * 2000) : null,
          ran ? 'bench-worker' : null,
        );
        insertEvent.run(id, createdAt);
        for (const tag of tags) insertTag.run(tag, createdAt, id);
      }
    });
    for (let from = 0; from < count; from += 50_000) insertBatch(from, Math.min(count, from + 50_000));
    const loadMs = Date.now() - loadStarted;
    const indexStarted = Date.now();
    for (const { sql } of indexes) db.exec(sql);
    db.pragma('wal_checkpoint(TRUNCATE)');
    return { jobs: count, now, loadMs, indexMs: Date.now() - indexStarted };
  } finally {
    db.close();
  }
}
