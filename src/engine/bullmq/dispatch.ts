import type { Job as BullJob, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { bullJobKey, bullPrefix, bullPriority, bullQueueName, createBullQueue, createBullWorker, ticketOptions } from '../../config/bull.js';
import { toError } from '../../utils/errors.js';
import type { Logger } from '../../utils/logger.js';
import { DELETE_IF_EQUAL } from './scripts/deleteIfEqual.js';
import { parseTicketId, ticketId, type Ticket } from './tickets.js';

/**
 * Tickets on BullMQ: one BullMQ queue per Jobline queue and job type. A ticket says "job X may
 * run now (or at its delay)"; the job itself is in PostgreSQL. Adding a ticket whose id exists
 * is a no-op, so re-enqueueing from PostgreSQL is always safe.
 */
export class TicketDispatch {
  private readonly queues = new Map<string, Queue>();
  private readonly workers = new Map<string, Worker>();
  private closed = false;

  constructor(
    private readonly bull: Redis,
    private readonly prefix: string,
    private readonly logger: Logger,
  ) {}

  /** BullMQ's connection is up (commands would be sent now, not queued). */
  get ready(): boolean {
    return this.bull.status === 'ready';
  }

  async add(tickets: Ticket[], now: number): Promise<void> {
    const byQueue = new Map<string, Ticket[]>();
    for (const ticket of tickets) {
      const name = bullQueueName(ticket.queue, ticket.type);
      const list = byQueue.get(name) ?? [];
      list.push(ticket);
      byQueue.set(name, list);
    }
    await Promise.all(
      [...byQueue].map(([name, list]) =>
        this.queueFor(name).addBulk(
          list.map((ticket) => ({
            name: ticket.type,
            data: {},
            opts: {
              ...ticketOptions,
              jobId: ticketId(ticket),
              priority: bullPriority(ticket.priority),
              // BullMQ counts a delay from the job's timestamp: ours, so the ticket is due exactly at runAt.
              ...(ticket.runAt > now ? { delay: ticket.runAt - now, timestamp: now } : {}),
            },
          })),
        ),
      ),
    );
  }

  /**
   * Takes up to `limit` tickets of a queue and type (highest priority first) and removes them
   * from BullMQ. Each comes with the token its BullMQ lock was taken with; the caller uses it
   * as the lease token. `troubled`: some request failed, so a ticket may be half taken (the
   * caller has the reconciler look).
   */
  async take(
    queue: string,
    type: string,
    limit: number,
    newToken: () => string,
  ): Promise<{ tickets: { jobId: string; seq: number; token: string }[]; troubled: boolean }> {
    const name = bullQueueName(queue, type);
    let worker = this.workers.get(name);
    if (!worker) {
      // A worker holds a connection of its own: make one only for a queue and type that has had tickets.
      if (!(await this.hasTickets(name)) || this.closed) return { tickets: [], troubled: false };
      worker = this.workerFor(name);
    }
    let troubled = false;
    const taken: { job: BullJob; token: string }[] = [];
    // One request first (an empty queue costs one round trip), then ever larger rounds of
    // concurrent requests while every request of a round finds a ticket.
    for (let round = 1; taken.length < limit && !this.closed; round *= 2) {
      const size = Math.min(round, limit - taken.length);
      const fetched = await Promise.allSettled(
        Array.from({ length: size }, async () => {
          const token = newToken();
          const job = (await worker.getNextJob(token, { block: false })) as BullJob | undefined;
          return job ? { job, token } : null;
        }),
      );
      let exhausted = false;
      for (const entry of fetched) {
        if (entry.status === 'rejected') {
          troubled = true;
          this.logger.debug({ err: toError(entry.reason), queue: name }, 'taking a ticket failed');
        } else if (entry.value) taken.push(entry.value);
        else exhausted = true;
      }
      if (exhausted || troubled) break;
    }
    await Promise.all(
      taken.map(({ job, token }) =>
        job.moveToCompleted(null, token, false).catch((error: unknown) => this.logger.debug({ err: toError(error), ticket: job.id }, 'removing a taken ticket failed')),
      ),
    );
    const tickets = taken.flatMap(({ job, token }) => {
      const parsed = job.id === undefined ? null : parseTicketId(job.id);
      return parsed ? [{ ...parsed, token }] : [];
    });
    return { tickets, troubled };
  }

  /** Drops a ticket that can no longer run (its job was cancelled or expired); best effort. */
  async remove(ticket: Ticket): Promise<void> {
    await this.queueFor(bullQueueName(ticket.queue, ticket.type))
      .remove(ticketId(ticket))
      .catch(() => undefined);
  }

  /**
   * The tickets of the list that can no longer run (one pipelined round trip): those BullMQ does
   * not hold, and those left taken by a process that died before removing them (in BullMQ's
   * active list, their lock expired or taken with a token of an instance that is not alive); the
   * latter are dropped here, so they can be added again.
   */
  async lost(tickets: Ticket[], alive: (lockToken: string) => boolean): Promise<Ticket[]> {
    if (tickets.length === 0) return [];
    const pipeline = this.bull.pipeline();
    for (const ticket of tickets) {
      const name = bullQueueName(ticket.queue, ticket.type);
      const id = ticketId(ticket);
      const key = bullJobKey(this.prefix, name, id);
      pipeline.exists(key).get(`${key}:lock`).lpos(`${bullPrefix(this.prefix)}:${name}:active`, id);
    }
    const replies = (await pipeline.exec()) ?? [];
    const value = (index: number): unknown => {
      const [error, reply] = replies[index] ?? [new Error('no reply'), null];
      if (error) throw error;
      return reply;
    };
    const lost: Ticket[] = [];
    for (const [index, ticket] of tickets.entries()) {
      const exists = value(3 * index) === 1;
      const lock = value(3 * index + 1);
      const active = value(3 * index + 2) !== null;
      if (!exists) lost.push(ticket);
      else if (active && !(typeof lock === 'string' && alive(lock))) {
        const key = bullJobKey(this.prefix, bullQueueName(ticket.queue, ticket.type), ticketId(ticket));
        // The lock of a taker that is gone would keep BullMQ from removing the ticket until it expires.
        if (typeof lock === 'string') await this.bull.eval(DELETE_IF_EQUAL, 1, `${key}:lock`, lock);
        await this.remove(ticket);
        lost.push(ticket);
      }
    }
    return lost;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.workers.values()].map((worker) => worker.close(true).catch(() => undefined)));
    await Promise.all([...this.queues.values()].map((queue) => queue.close().catch(() => undefined)));
    this.workers.clear();
    this.queues.clear();
  }

  private async hasTickets(name: string): Promise<boolean> {
    const key = (suffix: string) => `${bullPrefix(this.prefix)}:${name}:${suffix}`;
    return (await this.bull.exists(key('prioritized'), key('delayed'), key('wait'))) > 0;
  }

  private queueFor(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = createBullQueue(name, this.bull, this.prefix);
      queue.on('error', (error: Error) => this.logger.debug({ err: error, queue: name }, 'BullMQ queue error'));
      this.queues.set(name, queue);
    }
    return queue;
  }

  private workerFor(name: string): Worker {
    let worker = this.workers.get(name);
    if (!worker) {
      worker = createBullWorker(name, this.bull, this.prefix);
      worker.on('error', (error: Error) => this.logger.debug({ err: error, queue: name }, 'BullMQ worker error'));
      // Moves tickets whose taker died between taking and removing them back to the wait list (see createBullWorker).
      void worker.startStalledCheckTimer().catch((error: unknown) => this.logger.warn({ err: toError(error) }, 'BullMQ stalled check stopped'));
      this.workers.set(name, worker);
    }
    return worker;
  }
}
