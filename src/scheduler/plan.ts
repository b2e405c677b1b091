import { fireTimesBetween, nextFireTimes, type CronSpec } from './cron.js';

/**
 * What a scheduler does with a schedule that is due: which fire times to fire, which were
 * missed (the scheduler was down or far behind), and when the schedule is next due. Pure.
 */

/** A fire time this late or later counts as missed rather than as merely late. */
export const MISFIRE_GRACE_MS = 5000;
/** Fire times considered at once; a schedule further behind skips the rest as missed. */
const MAX_DUE = 1000;

export type CatchUp = 'none' | 'once';

export interface FirePlan {
  /** Fire times to create a job for now, oldest first. */
  fire: number[];
  /** Fire times skipped because they were missed. */
  missed: number;
  /** With catch-up "once": the fire time that stands for the whole missed window. */
  catchUpFireAt: number | null;
  nextRunAt: number | null;
}

export function planFires(spec: CronSpec, nextRunAt: number, now: number, catchUp: CatchUp): FirePlan {
  const due = nextRunAt <= now ? [nextRunAt, ...fireTimesBetween(spec, nextRunAt, now, MAX_DUE)] : [];
  const onTime = due.filter((fireAt) => now - fireAt < MISFIRE_GRACE_MS);
  const missed = due.filter((fireAt) => now - fireAt >= MISFIRE_GRACE_MS);
  const lastMissed = missed.at(-1);
  return {
    fire: onTime,
    missed: missed.length,
    catchUpFireAt: catchUp === 'once' && lastMissed !== undefined ? lastMissed : null,
    nextRunAt: nextFireTimes(spec, Math.max(now, due.at(-1) ?? now), 1)[0] ?? null,
  };
}
