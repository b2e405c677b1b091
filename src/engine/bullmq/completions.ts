import { sql, type Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { toError } from '../../utils/errors.js';
import { AfterCommit } from '../changes.js';
import { rowToJob, type JobRow } from '../rows.js';
import type { JobEvent, Outcome } from '../types.js';

/**
 * Completes several held jobs, each with its own lease check, and writes their job.completed
 * events: planCompletion for a whole batch in one statement, committed on its own (no
 * transaction round trips). The columns it sets are planFinish's for `complete`. Returns an
 * outcome per item and the events written.
 */
export async function completeMany(
  db: Kysely<Database>,
  now: number,
  items: { jobId: string; token: string; result: unknown }[],
): Promise<{ outcomes: Outcome[]; events: JobEvent[] }> {
  const values = sql.join(items.map((item) => sql`(${item.jobId}, ${item.token}, ${JSON.stringify(item.result ?? null)}::text)`));
  const { rows } = await sql<JobRow & { fenced_by: string }>`
    with done as (
      update jobs as j set state = 'completed', result = v.result, finished_at = ${now}, lease_token = null,
        lease_expires_at = null, last_seq = j.last_seq + 1
      from (values ${values}) as v(id, token, result)
      where j.id = v.id and j.lease_token = v.token and j.state = 'active'
      returning j.*, v.token as fenced_by
    ), written as (
      insert into job_events (job_id, seq, seq_end, type, at, data)
      select id, last_seq, null, 'job.completed', ${now}, '{"result":' || result || '}' from done
    )
    select * from done`.execute(db);
  // Keyed by job and token: of two completions of one job in a batch, only the lease holder's is accepted.
  const done = new Map(rows.map(({ fenced_by: token, ...row }) => [`${row.id} ${token}`, row]));
  const events: JobEvent[] = [];
  const outcomes = items.map((item): Outcome => {
    const row = done.get(`${item.jobId} ${item.token}`);
    if (!row) return { accepted: false, reason: 'lease_lost' };
    events.push({ type: 'job.completed', jobId: row.id, seq: row.last_seq, at: now, data: { result: item.result ?? null }, queue: row.queue, ownerId: row.owner_id });
    return { accepted: true, job: rowToJob(row) };
  });
  return { outcomes, events };
}

interface PendingCompletion {
  jobId: string;
  token: string;
  result: unknown;
  resolve: (outcome: Outcome) => void;
  reject: (error: Error) => void;
}

/** Completions arriving together share one statement; one batch is written at a time. */
export class Completions {
  private pending: PendingCompletion[] = [];
  private completing: Promise<void> | null = null;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly now: () => number,
    private readonly afterCommit: (after: AfterCommit) => Promise<void>,
  ) {}

  complete(claim: { jobId: string; token: string }, result: unknown): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      this.pending.push({ ...claim, result, resolve, reject });
      if (this.pending.length === 1 && !this.completing) setImmediate(() => void this.flush());
    });
  }

  /** Writes what is pending (and waits for a batch under way). */
  async flush(): Promise<void> {
    while (this.completing) await this.completing;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    this.completing = this.write(batch);
    await this.completing;
    this.completing = null;
    if (this.pending.length > 0) await this.flush();
  }

  private async write(batch: PendingCompletion[]): Promise<void> {
    try {
      const { outcomes, events } = await completeMany(this.db, this.now(), batch);
      const after = new AfterCommit();
      after.events.push(...events);
      await this.afterCommit(after);
      batch.forEach((item, index) => item.resolve(outcomes[index]!));
    } catch (error) {
      for (const item of batch) item.reject(toError(error));
    }
  }
}
