import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { emptyCounts, rowToEvents, rowToJob } from './rows.js';
import type { Job, JobEvent, JobFilter, JobPage, QueueInfo } from './types.js';

/**
 * Job records in SQL, read the same way by both engines (the embedded engine on SQLite, the
 * BullMQ engine on PostgreSQL): listings, events, queue counts. Row mapping is in rows.ts.
 */

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
