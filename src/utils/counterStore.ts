/**
 * Fixed-window counters for throttling. The in-memory store serves one process; distributed
 * mode supplies a Redis store with the same contract.
 */
export interface CounterStore {
  /** Adds one to `key` and returns the count in the current window and when the window ends. */
  hit(key: string, windowMs: number): Promise<{ count: number; resetAt: number }>;
  /** The count in the current window (0 when none). */
  peek(key: string): Promise<{ count: number; resetAt: number }>;
  reset(key: string): Promise<void>;
}

interface Window {
  count: number;
  resetAt: number;
}

export class MemoryCounterStore implements CounterStore {
  private readonly windows = new Map<string, Window>();
  private hitsSincePrune = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async hit(key: string, windowMs: number): Promise<Window> {
    const now = this.now();
    this.pruneOccasionally(now);
    const current = this.windows.get(key);
    if (!current || current.resetAt <= now) {
      const fresh = { count: 1, resetAt: now + windowMs };
      this.windows.set(key, fresh);
      return { ...fresh };
    }
    current.count += 1;
    return { ...current };
  }

  async peek(key: string): Promise<Window> {
    const current = this.windows.get(key);
    if (!current || current.resetAt <= this.now()) return { count: 0, resetAt: this.now() };
    return { ...current };
  }

  async reset(key: string): Promise<void> {
    this.windows.delete(key);
  }

  /** Drops ended windows now and then, so an attacker cycling keys cannot grow the map forever. */
  private pruneOccasionally(now: number): void {
    this.hitsSincePrune += 1;
    if (this.hitsSincePrune < 1000) return;
    this.hitsSincePrune = 0;
    for (const [key, window] of this.windows) if (window.resetAt <= now) this.windows.delete(key);
  }
}
