import type { Logger } from 'pino';
import { toError } from '../utils/errors.js';
import type { AfterCommit } from './changes.js';
import type { EngineListener } from './types.js';

/**
 * The engine's listeners and how they hear of committed changes, the same for both engines: a
 * failing listener is logged and the others still hear; a paused queue's availability is kept
 * quiet (its workers would find nothing to claim).
 */
export class Listeners {
  private readonly listeners = new Set<EngineListener>();

  constructor(
    private readonly logger: Logger,
    private readonly paused: ReadonlySet<string>,
  ) {}

  subscribe(listener: EngineListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Events, handlers to stop and queues with claimable jobs, of one committed transaction. */
  announce(after: AfterCommit): void {
    if (after.events.length > 0) this.events(after.events);
    for (const jobId of after.stopHandlers) this.cancelled(jobId);
    for (const queue of after.available) this.available(queue);
  }

  events(events: AfterCommit['events']): void {
    this.tell((listener) => listener.events?.(events));
  }

  cancelled(jobId: string): void {
    this.tell((listener) => listener.cancelled?.(jobId));
  }

  available(queue: string): void {
    if (!this.paused.has(queue)) this.tell((listener) => listener.available?.(queue));
  }

  private tell(call: (listener: EngineListener) => unknown): void {
    for (const listener of this.listeners) {
      try {
        call(listener);
      } catch (error) {
        this.logger.error({ err: toError(error) }, 'an engine listener failed');
      }
    }
  }
}
