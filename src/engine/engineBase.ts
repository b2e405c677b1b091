import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Listeners } from './listeners.js';
import { JobRecords } from './records.js';
import type { EngineListener, Job, JobEvent, JobFilter, JobPage, QueueInfo } from './types.js';

/**
 * What both engines do the same way because both keep their records in SQL: reads of jobs,
 * events and queues (through Kysely), and listener subscriptions.
 */
export abstract class EngineBase {
  protected readonly records: JobRecords;

  constructor(
    db: Kysely<Database>,
    protected readonly listeners: Listeners,
  ) {
    this.records = new JobRecords(db);
  }

  subscribe(listener: EngineListener): () => void {
    return this.listeners.subscribe(listener);
  }

  getJob(id: string): Promise<Job | null> {
    return this.records.get(id);
  }

  listJobs(filter: JobFilter, page: { limit: number; after?: { createdAt: number; id: string } | undefined }): Promise<JobPage> {
    return this.records.list(filter, page);
  }

  listEvents(jobId: string, afterSeq: number, limit: number): Promise<JobEvent[]> {
    return this.records.events(jobId, afterSeq, limit);
  }

  listQueues(): Promise<QueueInfo[]> {
    return this.records.queues();
  }
}
