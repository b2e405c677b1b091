import type { Engine, QueueInfo } from '../engine/types.js';

/** Admin operations on queues. Queues exist implicitly: a job names its queue. */
export class QueueService {
  constructor(private readonly engine: Engine) {}

  list(): Promise<QueueInfo[]> {
    return this.engine.listQueues();
  }

  /** Holds the queue's jobs (also those submitted later) until it is resumed; running ones finish. */
  async pause(name: string): Promise<QueueInfo> {
    await this.engine.pauseQueue(name);
    return this.info(name);
  }

  async resume(name: string): Promise<QueueInfo> {
    await this.engine.resumeQueue(name);
    return this.info(name);
  }

  retryFailed(name: string): Promise<number> {
    return this.engine.retryFailed(name);
  }

  clean(name: string, state: 'completed' | 'failed' | 'cancelled', olderThan: number | null): Promise<number> {
    return this.engine.cleanQueue(name, state, olderThan);
  }

  private async info(name: string): Promise<QueueInfo> {
    const queues = await this.engine.listQueues();
    return queues.find((queue) => queue.name === name) ?? { name, paused: false, counts: { queued: 0, scheduled: 0, active: 0, completed: 0, failed: 0, cancelled: 0 } };
  }
}
