/**
 * Runs an async task one at a time: a trigger while it runs asks for one more run afterwards,
 * however many triggers arrive. Each run starts in a fresh macrotask (setImmediate), never inside
 * the caller's promise chain — see `WebhookDispatcher` for why that matters on SQLite.
 */
export class SerialTask {
  private running: Promise<void> | null = null;
  private again = false;
  private scheduled: NodeJS.Immediate | null = null;
  private stopped = false;

  constructor(
    private readonly task: () => Promise<void>,
    private readonly onError: (error: unknown) => void,
  ) {}

  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.scheduled ??= setImmediate(() => {
      this.scheduled = null;
      this.run();
    });
  }

  /** No run starts after this; resolves when the current one has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = null;
    await this.running;
  }

  private run(): void {
    if (this.stopped || this.running) return;
    this.again = false;
    this.running = this.task()
      .catch((error: unknown) => this.onError(error))
      .finally(() => {
        this.running = null;
        if (this.again) this.trigger();
      });
  }
}
