import { AfterCommit } from '../changes.js';
import { toAppError } from '../storageErrors.js';
import type { TicketDispatch } from './dispatch.js';
import { toBullMq } from './guarded.js';
import type { Signals } from './signals.js';
import type { InstanceState } from './state.js';
import { insertPending, type PgWriteContext } from './store.js';
import { ticketOf, type Ticket } from './tickets.js';
import type { Wakeups } from './wakeups.js';

/**
 * The BullMQ engine's transactions and what follows their commit: listeners hear the events,
 * rows that became runnable get their tickets on BullMQ, workers here and in other processes
 * are woken, handlers of cancelled jobs are told to stop, here and elsewhere.
 */
export class PgTransactions {
  constructor(
    private readonly state: InstanceState,
    private readonly dispatch: TicketDispatch,
    private readonly signals: Signals,
    private readonly wakeups: Wakeups,
  ) {}

  /**
   * Runs `fn` in one transaction; its inserts (rows, tags, event rows) are written together, last.
   * Then the after-commit work. Refused transitions become AppErrors; other storage errors pass on.
   */
  async run<T>(fn: (ctx: PgWriteContext) => Promise<T>): Promise<T> {
    let after = new AfterCommit();
    let result: T;
    try {
      result = await this.state.options.db.transaction().execute(async (trx) => {
        after = new AfterCommit();
        const ctx: PgWriteContext = { trx, now: this.state.now(), after, maxCrashes: this.state.maxCrashes, pending: { jobs: [], tags: [], events: [] } };
        const value = await fn(ctx);
        await insertPending(ctx);
        return value;
      });
    } catch (error) {
      throw toAppError(error);
    }
    await this.afterCommit(after);
    return result;
  }

  async afterCommit(after: AfterCommit): Promise<void> {
    if (after.events.length > 0) this.state.listeners.events(after.events);
    if (after.runnable.length > 0) {
      const now = this.state.now();
      const tickets = after.runnable.map(ticketOf);
      // The rows are committed: should BullMQ not take the tickets now, the reconciler puts them there once it can.
      await toBullMq(this.state, this.dispatch, `enqueueing ${tickets.length} job(s)`, () => this.dispatch.add(tickets, now));
      this.scheduleWakeups(tickets, now);
    }
    for (const queue of after.available) this.signals.available(queue);
    for (const jobId of after.stopHandlers) {
      this.state.listeners.cancelled(jobId);
      this.signals.send({ kind: 'cancelled', jobId });
    }
  }

  /** Wakes workers here, and in every process, when delayed tickets come due (one signal per queue and time bucket). */
  scheduleWakeups(tickets: Ticket[], now: number): void {
    for (const ticket of tickets) {
      if (ticket.runAt <= now) continue;
      const at = this.wakeups.add(ticket.queue, ticket.runAt);
      if (at !== null) this.signals.send({ kind: 'due', queue: ticket.queue, at });
    }
  }
}
