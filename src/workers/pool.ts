import type { Logger } from 'pino';
import type { JobMetrics } from '../config/metrics.js';
import type { Engine } from '../engine/types.js';
import { toError } from '../utils/errors.js';
import type { HandlerRegistry, RegisteredHandler } from './registry.js';
import { startAttempt, type RunningAttempt } from './runAttempt.js';

export interface WorkerPoolOptions {
  engine: Engine;
  registry: HandlerRegistry;
  logger: Logger;
  metrics: JobMetrics;
  workerId: string;
  /** How long a claim lasts unless renewed; renewed every third of it. */
  leaseMs: number;
  /** How often idle consumers look for work when the engine does not push availability. */
  idlePollMs?: number;
}

interface QueueConsumer {
  queue: string;
  pumping: boolean;
  again: boolean;
}

/**
 * Runs handlers in this process. Queues exist implicitly, so a consumer is made for every queue
 * that has work (announced by the engine, or found in its listing); each claims, for every job
 * type with free slots, as many jobs as there are slots. A type's concurrency counts across queues.
 */
export class WorkerPool {
  private readonly consumers = new Map<string, QueueConsumer>();
  private readonly handlers: RegisteredHandler[];
  private readonly activeByType = new Map<string, number>();
  private readonly running = new Map<string, RunningAttempt>();
  private unsubscribe: (() => void) | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private stopped = true;

  constructor(private readonly options: WorkerPoolOptions) {
    this.handlers = options.registry.types().map((type) => options.registry.get(type)!);
    for (const handler of this.handlers) this.consumerFor(handler.queue);
  }

  start(): void {
    this.stopped = false;
    const { engine } = this.options;
    this.unsubscribe = engine.subscribe({
      available: (queue) => this.pumpQueue(queue),
      cancelled: (jobId) => this.stopAttempt(jobId, 'cancelled'),
    });
    this.renewTimer = setInterval(() => void this.renewLeases(), Math.max(50, Math.floor(this.options.leaseMs / 3)));
    this.renewTimer.unref();
    // An engine that announces new work needs only a slow safety poll.
    const pollMs = engine.capabilities.pushesAvailability ? 5000 : (this.options.idlePollMs ?? 250);
    this.pollTimer = setInterval(() => void this.discoverQueues(), pollMs);
    this.pollTimer.unref();
    void this.discoverQueues();
  }

  /** Stops claiming, lets running attempts finish for up to `graceMs`, then hands the rest back at once. */
  async stop(graceMs: number): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    const pending = [...this.running.values()].map((attempt) => attempt.done);
    let graceTimer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(pending),
      new Promise((resolve) => (graceTimer = setTimeout(resolve, graceMs))),
    ]);
    clearTimeout(graceTimer);
    if (this.renewTimer) clearInterval(this.renewTimer);
    const leftovers = [...this.running.values()];
    for (const attempt of leftovers) {
      attempt.stopReason = 'shutdown';
      attempt.controller.abort(new Error('The worker is shutting down.'));
    }
    if (leftovers.length > 0) {
      await this.options.engine.releaseJobs(leftovers.map(({ claim }) => ({ jobId: claim.job.id, token: claim.token })));
      this.options.logger.info({ jobs: leftovers.length }, 'released unfinished jobs at shutdown');
    }
    // Listened until now, so a job cancelled during the grace period was stopped.
    this.unsubscribe?.();
  }

  /** How many attempts are running now. */
  get activeCount(): number {
    return this.running.size;
  }

  private consumerFor(queue: string): QueueConsumer {
    let consumer = this.consumers.get(queue);
    if (!consumer) {
      consumer = { queue, pumping: false, again: false };
      this.consumers.set(queue, consumer);
    }
    return consumer;
  }

  private pumpQueue(queue: string): void {
    if (!this.stopped) void this.pump(this.consumerFor(queue));
  }

  /** Finds queues with waiting jobs (a job may name any queue), then looks for work in every queue. */
  private async discoverQueues(): Promise<void> {
    try {
      for (const queue of await this.options.engine.queuesWithWaitingJobs()) this.consumerFor(queue);
    } catch (error) {
      this.options.logger.error({ err: toError(error) }, 'listing queues failed');
    }
    if (!this.stopped) this.consumers.forEach((consumer) => void this.pump(consumer));
  }

  private async pump(consumer: QueueConsumer): Promise<void> {
    if (consumer.pumping) {
      consumer.again = true;
      return;
    }
    consumer.pumping = true;
    try {
      do {
        consumer.again = false;
        for (const handler of this.handlers) {
          if (this.stopped) return;
          const free = handler.concurrency - (this.activeByType.get(handler.type) ?? 0);
          if (free <= 0) continue;
          const claims = await this.options.engine.claimJobs({
            queue: consumer.queue,
            types: [handler.type],
            limit: free,
            workerId: this.options.workerId,
            leaseMs: this.options.leaseMs,
          });
          for (const claim of claims) this.launch(consumer, handler, claim);
          // A full batch suggests more is waiting.
          if (claims.length === free) consumer.again = true;
        }
      } while (consumer.again && !this.stopped);
    } catch (error) {
      this.options.logger.error({ err: toError(error), queue: consumer.queue }, 'claiming jobs failed');
    } finally {
      consumer.pumping = false;
    }
  }

  private launch(consumer: QueueConsumer, handler: RegisteredHandler, claim: RunningAttempt['claim']): void {
    const { job } = claim;
    const labels = { queue: job.queue, type: job.type };
    this.activeByType.set(handler.type, (this.activeByType.get(handler.type) ?? 0) + 1);
    const started = Date.now();
    this.options.metrics.attemptStarted(labels, started - Math.max(job.runAt, job.createdAt));
    const attempt = startAttempt(this.options.engine, claim, handler, {
      onReportError: (error) => this.options.logger.warn({ err: error, jobId: job.id }, 'could not report a job outcome; trying again'),
    });
    this.running.set(job.id, attempt);
    attempt.done
      .then((outcome) => {
        if (outcome !== 'stopped') this.options.metrics.attemptEnded(labels, outcome, Date.now() - started);
      })
      .catch((error: unknown) => this.options.logger.error({ err: toError(error), jobId: job.id }, 'reporting a job outcome failed'))
      .finally(async () => {
        this.running.delete(job.id);
        // The slot is free only once the handler has really stopped, so concurrency stays a real limit.
        await attempt.handlerSettled;
        this.activeByType.set(handler.type, (this.activeByType.get(handler.type) ?? 1) - 1);
        if (this.stopped) return;
        // The freed slot may serve this queue or another one with jobs of the same type.
        void this.pump(consumer);
        for (const other of this.consumers.values()) if (other !== consumer) void this.pump(other);
      });
  }

  private stopAttempt(jobId: string, reason: 'cancelled' | 'lease_lost'): void {
    const attempt = this.running.get(jobId);
    if (!attempt || attempt.stopReason) return;
    attempt.stopReason = reason;
    attempt.controller.abort(new Error(reason === 'cancelled' ? 'The job was cancelled.' : 'The job lease was lost.'));
  }

  private async renewLeases(): Promise<void> {
    const held = [...this.running.values()].filter((attempt) => !attempt.stopReason);
    if (held.length === 0) return;
    try {
      const lost = await this.options.engine.renewLeases(
        held.map(({ claim }) => ({ jobId: claim.job.id, token: claim.token })),
        this.options.leaseMs,
      );
      for (const jobId of lost) this.stopAttempt(jobId, 'lease_lost');
    } catch (error) {
      this.options.logger.error({ err: toError(error) }, 'renewing leases failed');
    }
  }
}
