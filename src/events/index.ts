import type { JobEvent } from '../engine/types.js';

/**
 * The event bus port: carries committed job events, and notices that end sessions, to every
 * process that serves clients. In-process here; distributed mode supplies a Redis bus.
 */

export type ControlMessage =
  | { type: 'apiKey.revoked'; apiKeyId: string }
  /** A user's password or role changed, or the user was deleted: their live connections end. */
  | { type: 'user.sessionsRevoked'; userId: string };

export interface EventBus {
  publishJobEvents(events: JobEvent[]): void;
  publishControl(message: ControlMessage): void;
  onJobEvents(listener: (events: JobEvent[]) => void): () => void;
  onControl(listener: (message: ControlMessage) => void): () => void;
  /**
   * Called when the bus hears everything again after a lapse in which messages may have been lost
   * (a Redis connection dropped and came back): live consumers catch up from storage.
   */
  onResume(listener: () => void): () => void;
  close(): Promise<void>;
}

/** One process: listeners are called synchronously, in publish order; nothing is ever lost, so it never resumes. */
export class LocalEventBus implements EventBus {
  private readonly jobListeners = new Set<(events: JobEvent[]) => void>();
  private readonly controlListeners = new Set<(message: ControlMessage) => void>();

  publishJobEvents(events: JobEvent[]): void {
    for (const listener of this.jobListeners) listener(events);
  }

  publishControl(message: ControlMessage): void {
    for (const listener of this.controlListeners) listener(message);
  }

  onJobEvents(listener: (events: JobEvent[]) => void): () => void {
    this.jobListeners.add(listener);
    return () => this.jobListeners.delete(listener);
  }

  onControl(listener: (message: ControlMessage) => void): () => void {
    this.controlListeners.add(listener);
    return () => this.controlListeners.delete(listener);
  }

  onResume(_listener: () => void): () => void {
    return () => undefined;
  }

  async close(): Promise<void> {
    this.jobListeners.clear();
    this.controlListeners.clear();
  }
}
