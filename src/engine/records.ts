import type { Kysely, Selectable } from 'kysely';
import type { Database, JobEventsTable, JobsTable } from '../db/schema.js';
import {
  JOB_STATES,
  type BackoffPolicy,
  type Job,
  type JobEvent,
  type JobEventType,
  type JobFilter,
  type JobPage,
  type QueueCounts,
  type QueueInfo,
} from './types.js';

/**
 * Job records in SQL, read the same way by both engines (the embedded engine on SQLite, the
 * BullMQ engine on PostgreSQL): row mapping, listings, events, queue counts.
 */

export type JobRow = Selectable<JobsTable>;
export type JobEventRow = Selectable<JobEventsTable>;

export function parseJson(text: string | null): unknown {
  return text === null ? null : (JSON.parse(text) as unknown);
}

export function rowToJob(row: JobRow): Job {
  return {
    id: row.id,
    type: row.type,
    queue: row.queue,
    state: row.state,
    priority: row.priority,
    payload: parseJson(row.payload),
    result: parseJson(row.result),
    error: parseJson(row.error) as Job['error'],
    progress: parseJson(row.progress),
    attemptsMade: row.attempts_made,
    maxAttempts: row.max_attempts,
    backoff: JSON.parse(row.backoff) as BackoffPolicy,
    timeoutMs: row.timeout_ms,
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
    idempotencyKey: row.idempotency_key,
    singletonKey: row.singleton_key,
    tags: JSON.parse(row.tags) as string[],
    ownerId: row.owner_id,
    scheduleId: row.schedule_id,
    createdAt: Number(row.created_at),
    runAt: Number(row.run_at),
    startedAt: row.started_at === null ? null : Number(row.started_at),
    finishedAt: row.finished_at === null ? null : Number(row.finished_at),
    lastSeq: row.last_seq,
  };
}

/** The events a stored row holds: one, or a coalesced run of deltas (seq..seq_end). */
export function rowToEvents(row: JobEventRow, job: { queue: string; ownerId: string }): JobEvent[] {
  const base = { type: row.type as JobEventType, jobId: row.job_id, at: Number(row.at), queue: job.queue, ownerId: job.ownerId };
  const data = JSON.parse(row.data) as Record<string, unknown>;
  if (row.seq_end === null) return [{ ...base, seq: row.seq, data }];
  const chunks = data['chunks'] as unknown[];
  return chunks.map((chunk, index) => ({ ...base, seq: row.seq + index, data: { chunk } }));
}

export function emptyCounts(): QueueCounts {
  return Object.fromEntries(JOB_STATES.map((state) => [state, 0])) as QueueCounts;
}

export class JobRecords {
  constructor(private readonly db: Kysely<Database>) {}

  async get(id: string): Promise<Job | null> {
    const row = await this.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToJob(row) : null;
  }

  /**
   * Newest first; `after` is the (createdAt, id) of the last item already served. With a tag the
   * walk starts from the tag's index (in listing order); otherwise from the jobs' own indexes.
   */
  async list(filter: JobFilter, page: { limit: number; after?: { createdAt: number; id: string } | undefined }): Promise<JobPage> {
    const after = page.after;
    let query = filter.tag !== undefined
      ? this.db
          .selectFrom('job_tags as t')
          .innerJoin('jobs as j', 'j.id', 't.job_id')
          .selectAll('j')
          .where('t.tag', '=', filter.tag)
          .$if(after !== undefined, (q) =>
            q.where((eb) => eb(eb.refTuple('t.created_at', 't.job_id'), '<', eb.tuple(after!.createdAt, after!.id))),
          )
          .orderBy('t.created_at', 'desc')
          .orderBy('t.job_id', 'desc')
      : this.db
          .selectFrom('jobs as j')
          .selectAll('j')
          // A row-value comparison lets the index seek straight to the cursor, however deep.
          .$if(after !== undefined, (q) =>
            q.where((eb) => eb(eb.refTuple('j.created_at', 'j.id'), '<', eb.tuple(after!.createdAt, after!.id))),
          )
          .orderBy('j.created_at', 'desc')
          .orderBy('j.id', 'desc');
    if (filter.ownerId !== undefined) query = query.where('j.owner_id', '=', filter.ownerId);
    if (filter.scheduleId !== undefined) query = query.where('j.schedule_id', '=', filter.scheduleId);
    if (filter.states !== undefined && filter.states.length > 0) query = query.where('j.state', 'in', filter.states);
    if (filter.queue !== undefined) query = query.where('j.queue', '=', filter.queue);
    if (filter.type !== undefined) query = query.where('j.type', '=', filter.type);
    if (filter.createdAfter !== undefined) query = query.where('j.created_at', '>', filter.createdAfter);
    if (filter.createdBefore !== undefined) query = query.where('j.created_at', '<', filter.createdBefore);
    const rows = await query.limit(page.limit + 1).execute();
    const items = rows.slice(0, page.limit).map(rowToJob);
    const last = items.at(-1);
    return { items, next: rows.length > page.limit && last ? { createdAt: last.createdAt, id: last.id } : null };
  }

  async events(jobId: string, afterSeq: number, limit: number): Promise<JobEvent[]> {
    const job = await this.db.selectFrom('jobs').select(['queue', 'owner_id']).where('id', '=', jobId).executeTakeFirst();
    if (!job) return [];
    const rows = await this.db
      .selectFrom('job_events')
      .selectAll()
      .where('job_id', '=', jobId)
      .where((eb) => eb(eb.fn.coalesce('seq_end', 'seq'), '>', afterSeq))
      .orderBy('seq')
      .limit(limit)
      .execute();
    const owner = { queue: job.queue, ownerId: job.owner_id };
    return rows
      .flatMap((row) => rowToEvents(row, owner))
      .filter((event) => event.seq > afterSeq)
      .slice(0, limit);
  }

  /** Every queue that has jobs or settings, with counts per state. */
  async queues(): Promise<QueueInfo[]> {
    const [counts, settings] = await Promise.all([
      this.db
        .selectFrom('jobs')
        .select(['queue', 'state', (eb) => eb.fn.countAll<number>().as('n')])
        .groupBy(['queue', 'state'])
        .execute(),
      this.db.selectFrom('queues').selectAll().execute(),
    ]);
    const byName = new Map<string, QueueInfo>();
    const entry = (name: string) => {
      let info = byName.get(name);
      if (!info) {
        info = { name, paused: false, counts: emptyCounts() };
        byName.set(name, info);
      }
      return info;
    };
    for (const row of settings) entry(row.name).paused = row.paused === 1;
    for (const row of counts) entry(row.queue).counts[row.state] = Number(row.n);
    return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}
