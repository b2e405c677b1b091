import { Cron } from 'croner';

/**
 * Cron expressions in an IANA time zone, through croner: 5 fields, or 6 with seconds first
 * (or a nickname such as @daily). Pure: no I/O, times are epoch milliseconds.
 *
 * Daylight saving: a wall-clock time that does not exist (the spring-forward gap) fires at the
 * first instant after the gap; one that happens twice (the fall-back overlap) fires once, at
 * its first occurrence.
 */

export interface CronSpec {
  cron: string;
  timezone: string;
}

const NICKNAMES = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);

/** Why the expression or zone is unusable, or null when both are fine. */
export function cronProblem(spec: CronSpec): { field: 'cron' | 'timezone'; message: string } | null {
  if (!isTimeZone(spec.timezone)) return { field: 'timezone', message: `'${spec.timezone}' is not an IANA time zone` };
  const fields = spec.cron.trim().split(/\s+/);
  if (!NICKNAMES.has(spec.cron.trim()) && fields.length !== 5 && fields.length !== 6) {
    return { field: 'cron', message: 'must have 5 fields (minute hour day month weekday), or 6 with seconds first' };
  }
  try {
    const next = schedule(spec).nextRun(new Date(0));
    if (next === null) return { field: 'cron', message: 'never fires' };
  } catch (error) {
    return { field: 'cron', message: (error as Error).message.replace(/^CronPattern: /, '') };
  }
  return null;
}

export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** The next `count` fire times strictly after `after`. */
export function nextFireTimes(spec: CronSpec, after: number, count: number): number[] {
  return schedule(spec)
    .nextRuns(count, new Date(after))
    .map((date) => date.getTime());
}

/** Fire times in (after, until], at most `max` of them (oldest first). */
export function fireTimesBetween(spec: CronSpec, after: number, until: number, max: number): number[] {
  const cron = schedule(spec);
  const times: number[] = [];
  let cursor = new Date(after);
  while (times.length < max) {
    const next = cron.nextRun(cursor);
    if (next === null || next.getTime() > until) break;
    times.push(next.getTime());
    cursor = next;
  }
  return times;
}

function schedule(spec: CronSpec): Cron {
  return new Cron(spec.cron.trim(), { timezone: spec.timezone, paused: true, mode: '5-or-6-parts' });
}
