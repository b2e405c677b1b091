import { LocalEventBus } from '../../src/events/index.js';

/** An in-process bus that can be told it lapsed and came back, as the Redis bus does after a reconnection. */
export class ResumableBus extends LocalEventBus {
  private readonly resumeListeners = new Set<() => void>();

  override onResume(listener: () => void): () => void {
    this.resumeListeners.add(listener);
    return () => this.resumeListeners.delete(listener);
  }

  resume(): void {
    for (const listener of this.resumeListeners) listener();
  }
}
