/**
 * When to wake this process's workers for delayed jobs: BullMQ moves a delayed ticket to the
 * waiting ones at its time, but tells nobody. Due times are kept per queue, rounded up to
 * BUCKET_MS (many jobs with nearly the same time cost one entry), at most MAX_ENTRIES of them;
 * beyond that, workers find due jobs by their safety poll.
 */
const BUCKET_MS = 50;
const MAX_ENTRIES = 10_000;
const MAX_TIMER_MS = 3_600_000;

export class Wakeups {
  /** `<at>|<queue>` for each entry, and the entries in time order. */
  private readonly keys = new Set<string>();
  private entries: { at: number; queue: string }[] = [];
  private timer: { at: number; handle: NodeJS.Timeout } | null = null;
  private stopped = false;

  constructor(
    private readonly now: () => number,
    private readonly wake: (queue: string) => void,
  ) {}

  /** Returns the rounded time when it was new (worth telling other processes), null otherwise. */
  add(queue: string, at: number): number | null {
    if (this.stopped) return null;
    const bucket = Math.ceil(at / BUCKET_MS) * BUCKET_MS;
    const key = `${bucket}|${queue}`;
    if (this.keys.has(key) || this.keys.size >= MAX_ENTRIES) return null;
    this.keys.add(key);
    const index = this.entries.findIndex((entry) => entry.at > bucket);
    this.entries.splice(index === -1 ? this.entries.length : index, 0, { at: bucket, queue });
    this.arm();
    return bucket;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer.handle);
    this.timer = null;
  }

  private arm(): void {
    const first = this.entries[0];
    if (!first || (this.timer && this.timer.at <= first.at)) return;
    if (this.timer) clearTimeout(this.timer.handle);
    const handle = setTimeout(() => this.fire(), Math.min(MAX_TIMER_MS, Math.max(0, first.at - this.now())));
    handle.unref();
    this.timer = { at: first.at, handle };
  }

  private fire(): void {
    this.timer = null;
    const now = this.now();
    const woken = new Set<string>();
    while (this.entries[0] && this.entries[0].at <= now) {
      const entry = this.entries.shift()!;
      this.keys.delete(`${entry.at}|${entry.queue}`);
      woken.add(entry.queue);
    }
    for (const queue of woken) this.wake(queue);
    this.arm();
  }
}
