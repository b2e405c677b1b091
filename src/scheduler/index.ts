import type { Logger } from 'pino';
import type { SchedulerMetrics } from '../config/metrics.js';
import type { Engine } from '../engine/types.js';
import type { JobInput, JobService } from '../services/jobService.js';
import type { ScheduleRecord, ScheduleStore } from '../services/scheduleService.js';
import type { Clock } from '../utils/clock.js';
import { AppError, toError } from '../utils/errors.js';
import { planFires } from './plan.js';

/** The longest the scheduler sleeps, so schedules changed elsewhere are noticed within it. */
const MAX_SLEEP_MS = 1000;
const LIVE_STATES = ['queued', 'scheduled', 'active'] as const;

export interface SchedulerOptions {
  store: ScheduleStore;
  engine: Engine;
  jobs: JobService;
  clock: Clock;
  logger: Logger;
  metrics: SchedulerMetrics;
}

/**
 * Fires cron schedules. It sleeps until the earliest `nextRunAt` (at most a second), creates a
 * job for each due fire time and moves `nextRunAt` on. A fire time creates at most one job: the
 * database refuses a second job for the same schedule and fire time, so a restart, a crash at
 * the fire instant or a second scheduler process cannot double it.
 */
export class Scheduler {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private ticking: Promise<void> | null = null;

  constructor(private readonly options: SchedulerOptions) {}

  start(): void {
    this.running = true;
    this.wake();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.ticking;
  }

  /** Looks again at once: a schedule was created, changed or enabled. */
  wake(): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), 0);
  }

  private async tick(): Promise<void> {
    this.timer = null;
    if (!this.running || this.ticking) return;
    this.ticking = this.fireDue()
      .catch((error: unknown) => this.options.logger.error({ err: toError(error) }, 'scheduler tick failed'))
      .finally(() => {
        this.ticking = null;
      });
    await this.ticking;
    if (!this.running) return;
    const next = await this.options.store.earliestNextRun().catch(() => null);
    if (!this.running) return;
    const now = this.options.clock.now();
    // Still overdue after a tick means firing it failed: look again later rather than at once.
    const wait = next === null || next <= now ? MAX_SLEEP_MS : Math.min(MAX_SLEEP_MS, next - now);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), wait);
    this.timer.unref();
  }

  private async fireDue(): Promise<void> {
    const now = this.options.clock.now();
    for (const schedule of await this.options.store.due(now)) {
      if (!this.running) return;
      try {
        await this.fireSchedule(schedule, now);
      } catch (error) {
        this.options.logger.error({ err: toError(error), scheduleId: schedule.id }, 'firing a schedule failed');
      }
    }
  }

  private async fireSchedule(schedule: ScheduleRecord, now: number): Promise<void> {
    if (schedule.nextRunAt === null) return;
    const plan = planFires(schedule, schedule.nextRunAt, now, schedule.catchUp);
    if (plan.missed > 0) {
      this.options.metrics.skipped('missed', plan.missed);
      this.options.logger.warn({ scheduleId: schedule.id, missed: plan.missed }, 'schedule missed fire times while the scheduler was not running');
    }
    const fireTimes = plan.catchUpFireAt !== null && plan.fire.length === 0 ? [plan.catchUpFireAt] : plan.fire;
    let lastFired: number | null = null;
    for (const fireAt of fireTimes) {
      try {
        if (await this.fire(schedule, fireAt)) lastFired = fireAt;
      } catch (error) {
        // A template that can no longer be a job (its type was removed, a limit lowered) will not
        // become one by trying again: skip this fire time and move on. Anything else is retried.
        if (!(error instanceof AppError) || error.status >= 500) throw error;
        this.options.metrics.skipped('error', 1);
        this.options.logger.error({ scheduleId: schedule.id, fireAt: new Date(fireAt).toISOString(), code: error.code }, `schedule could not create its job: ${error.message}`);
      }
    }
    // Only the process that moves nextRunAt on from the value it read wins; a second scheduler retries nothing.
    await this.options.store.advance(schedule.id, schedule.nextRunAt, plan.nextRunAt, lastFired);
  }

  /** Creates the job for one fire time; false when it was skipped (overlap) or already existed. */
  private async fire(schedule: ScheduleRecord, fireAt: number): Promise<boolean> {
    const { engine, metrics } = this.options;
    if (schedule.overlap === 'skip') {
      const live = await engine.listJobs({ scheduleId: schedule.id, states: [...LIVE_STATES] }, { limit: 1 });
      if (live.items.length > 0) {
        metrics.skipped('overlap', 1);
        return false;
      }
    }
    const job = this.options.jobs.buildJob(schedule.ownerId, schedule.job as JobInput, { scheduleId: schedule.id, fireAt });
    const [added] = await engine.addJobs([job]);
    if (!added?.created) return false;
    metrics.fired(this.options.clock.now() - fireAt);
    return true;
  }
}
