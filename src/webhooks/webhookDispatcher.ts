import type { Kysely, Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';
import { rowToEvents, rowToJob, type JobEventRow } from '../engine/rows.js';
import type { Job, JobEvent } from '../engine/types.js';
import { toPublicEvent, toPublicJob, type PublicJob } from '../wire/jobs.js';
import { deliveryBody, newDeliveryRow, wantsEvent, type DeliveryRow, type EndpointRow } from './webhookRecords.js';
import type { Clock } from '../utils/clock.js';
import { toError } from '../utils/errors.js';
import { SerialTask } from '../utils/serialTask.js';
import { createOutboxReader, type OutboxReader } from './outboxReader.js';

/**
 * Turns the job-event outbox into webhook deliveries. Reads `job_events` after this consumer's
 * cursor, in commit order (see outboxReader.ts), matches each event to the enabled endpoints of the job's owner, and
 * inserts the deliveries and advances the cursor in one transaction: an event is either
 * dispatched with its deliveries or not at all, so a process that dies at any point resumes
 * from the cursor and a committed job transition never misses its webhook.
 *
 * SQLite: the embedded engine writes through the same connection synchronously. A transaction
 * here runs only from a fresh macrotask (SerialTask, setImmediate) and awaits nothing but the
 * synchronous driver, so it completes within one turn of the event loop and no engine write can
 * land inside it.
 */

export const OUTBOX_CONSUMER = 'webhooks';
const DEFAULT_BATCH = 500;
const DEFAULT_INTERVAL_MS = 200;
/** Rows per insert statement: far below SQLite's bound-parameter limit. */
const INSERT_CHUNK = 100;
/** Wake-ups from committed events are gathered for this long, so a busy engine does not start a run per commit. */
const WAKE_DELAY_MS = 10;

export interface WebhookDispatcherOptions {
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  /** Polls this often besides being woken (events committed by other processes). */
  intervalMs?: number;
  batchSize?: number;
  /** Told, after the commit, that a batch created deliveries. */
  onDeliveries?: (count: number) => void;
}

interface Candidate {
  row: EndpointRow;
  events: string[];
}

export class WebhookDispatcher {
  private readonly task: SerialTask;
  private readonly outbox: OutboxReader;
  private readonly batchSize: number;
  private timer: NodeJS.Timeout | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: WebhookDispatcherOptions) {
    this.batchSize = options.batchSize ?? DEFAULT_BATCH;
    this.outbox = createOutboxReader(options.db, OUTBOX_CONSUMER);
    this.task = new SerialTask(
      () => this.drain(),
      (error) => options.logger.error({ err: toError(error) }, 'webhook dispatch failed'),
    );
  }

  start(): void {
    this.timer = setInterval(() => this.task.trigger(), this.options.intervalMs ?? DEFAULT_INTERVAL_MS);
    this.timer.unref();
    this.task.trigger();
  }

  /** New events were committed: dispatch soon (coalesced). */
  wake(): void {
    this.wakeTimer ??= setTimeout(() => {
      this.wakeTimer = null;
      this.task.trigger();
    }, WAKE_DELAY_MS);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.timer = null;
    this.wakeTimer = null;
    await this.task.stop();
  }

  /** Dispatches batches until caught up, yielding to the event loop between them. */
  private async drain(): Promise<void> {
    for (;;) {
      const processed = await this.dispatchBatch();
      if (processed < this.batchSize) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** One batch in one transaction; returns how many event rows it consumed. */
  private async dispatchBatch(): Promise<number> {
    // A cheap look first, so an idle server does not open a write transaction every tick.
    if (!(await this.outbox.hasNew())) return 0;
    if (!(await this.anyEndpointEnabled())) {
      // Nobody listens: skip the events rather than read them. An endpoint created meanwhile takes
      // only events from its creation on, and these happened before.
      await this.outbox.skipAll();
      return 0;
    }
    const outcome = await this.options.db.transaction().execute((trx) => this.dispatchIn(trx));
    if (outcome.created > 0) this.options.onDeliveries?.(outcome.created);
    return outcome.processed;
  }

  private async anyEndpointEnabled(): Promise<boolean> {
    return (await this.options.db.selectFrom('webhook_endpoints').select('id').where('enabled', '=', 1).limit(1).executeTakeFirst()) !== undefined;
  }

  private async dispatchIn(trx: Transaction<Database>): Promise<{ processed: number; created: number }> {
    const rows = await this.outbox.readLocked(trx, this.batchSize);
    const last = rows.at(-1);
    if (last === undefined) return { processed: 0, created: 0 };
    const deliveries = await this.deliveriesFor(trx, rows);
    for (let start = 0; start < deliveries.length; start += INSERT_CHUNK) {
      await trx.insertInto('webhook_deliveries').values(deliveries.slice(start, start + INSERT_CHUNK)).execute();
    }
    await this.outbox.advance(trx, last);
    return { processed: rows.length, created: deliveries.length };
  }

  /** The deliveries a batch of event rows calls for: one per event and matching endpoint. */
  private async deliveriesFor(trx: Transaction<Database>, rows: JobEventRow[]): Promise<DeliveryRow[]> {
    const jobIds = [...new Set(rows.map((row) => row.job_id))];
    const jobRows = await trx.selectFrom('jobs').selectAll().where('id', 'in', jobIds).execute();
    const jobs = new Map(jobRows.map((row) => [row.id, rowToJob(row)]));
    const owners = [...new Set(jobRows.map((row) => row.owner_id))];
    if (owners.length === 0) return [];
    const endpoints = await trx.selectFrom('webhook_endpoints').selectAll().where('enabled', '=', 1).where('owner_id', 'in', owners).execute();
    if (endpoints.length === 0) return [];
    const byOwner = new Map<string, Candidate[]>();
    for (const row of endpoints) {
      const list = byOwner.get(row.owner_id) ?? [];
      list.push({ row, events: JSON.parse(row.events) as string[] });
      byOwner.set(row.owner_id, list);
    }
    const now = this.options.clock.now();
    const publicJobs = new Map<string, PublicJob>();
    const deliveries: DeliveryRow[] = [];
    for (const row of rows) {
      const job = jobs.get(row.job_id);
      // A job deleted since its event was written: there is nothing left to describe.
      const candidates = job === undefined ? undefined : byOwner.get(job.ownerId);
      if (job === undefined || candidates === undefined) continue;
      for (const event of rowToEvents(row, job)) {
        const targets = candidates.filter((candidate) => matches(candidate, event, job));
        if (targets.length === 0) continue;
        let publicJob = publicJobs.get(job.id);
        if (publicJob === undefined) publicJobs.set(job.id, (publicJob = toPublicJob(job)));
        const payload = deliveryBody(event.type, event.at, { job: publicJob, event: toPublicEvent(event) });
        for (const target of targets) {
          deliveries.push(newDeliveryRow({ endpointId: target.row.id, eventType: event.type, jobId: job.id, eventSeq: event.seq, payload, now }));
        }
      }
    }
    return deliveries;
  }
}

/** Event filter, queue filter, and only events that happened once the endpoint existed. */
function matches(candidate: Candidate, event: JobEvent, job: Job): boolean {
  if (!wantsEvent(candidate.events, event.type)) return false;
  if (candidate.row.queue !== null && candidate.row.queue !== job.queue) return false;
  return event.at >= Number(candidate.row.created_at);
}
