import { describe, expect, it } from 'vitest';
import { cronProblem, fireTimesBetween, nextFireTimes } from '../../src/scheduler/cron.js';
import { MISFIRE_GRACE_MS, planFires } from '../../src/scheduler/plan.js';

const iso = (times: number[]) => times.map((time) => new Date(time).toISOString());
const at = (text: string) => Date.parse(text);

describe('cron expressions', () => {
  it('accepts 5 and 6 fields and nicknames, refusing others with a reason', () => {
    expect(cronProblem({ cron: '*/5 * * * *', timezone: 'UTC' })).toBeNull();
    expect(cronProblem({ cron: '*/10 * * * * *', timezone: 'UTC' })).toBeNull();
    expect(cronProblem({ cron: '@daily', timezone: 'Europe/Berlin' })).toBeNull();
    expect(cronProblem({ cron: '* * * *', timezone: 'UTC' })).toMatchObject({ field: 'cron' });
    expect(cronProblem({ cron: '0 0 0 * * * 2030', timezone: 'UTC' })).toMatchObject({ field: 'cron' });
    expect(cronProblem({ cron: '61 * * * *', timezone: 'UTC' })?.message).toContain('minute');
    expect(cronProblem({ cron: 'every day', timezone: 'UTC' })).toMatchObject({ field: 'cron' });
    expect(cronProblem({ cron: '0 0 30 2 *', timezone: 'UTC' })).toMatchObject({ field: 'cron', message: 'never fires' });
    expect(cronProblem({ cron: '* * * * *', timezone: 'Mars/Olympus' })).toMatchObject({ field: 'timezone' });
  });

  it('reads 6 fields with seconds first', () => {
    expect(iso(nextFireTimes({ cron: '15,45 * * * * *', timezone: 'UTC' }, at('2026-01-01T00:00:00Z'), 3))).toEqual([
      '2026-01-01T00:00:15.000Z',
      '2026-01-01T00:00:45.000Z',
      '2026-01-01T00:01:15.000Z',
    ]);
  });

  it('fires in the schedule’s time zone', () => {
    expect(iso(nextFireTimes({ cron: '0 9 * * 1-5', timezone: 'America/New_York' }, at('2026-01-02T15:00:00Z'), 2))).toEqual([
      '2026-01-05T14:00:00.000Z',
      '2026-01-06T14:00:00.000Z',
    ]);
  });

  describe('daylight saving in Europe/Berlin', () => {
    const daily0230 = { cron: '30 2 * * *', timezone: 'Europe/Berlin' };
    it('fires a time inside the spring-forward gap at the first instant after it', () => {
      // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
      expect(iso(nextFireTimes(daily0230, at('2026-03-28T00:00:00Z'), 3))).toEqual([
        '2026-03-28T01:30:00.000Z', // 02:30 CET
        '2026-03-29T01:00:00.000Z', // 03:00 CEST, right after the gap
        '2026-03-30T00:30:00.000Z', // 02:30 CEST
      ]);
    });
    it('fires a time inside the fall-back overlap once', () => {
      // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
      expect(iso(nextFireTimes(daily0230, at('2026-10-24T00:00:00Z'), 3))).toEqual([
        '2026-10-24T00:30:00.000Z', // 02:30 CEST
        '2026-10-25T00:30:00.000Z', // the first 02:30, CEST; not again at 01:30Z
        '2026-10-26T01:30:00.000Z', // 02:30 CET
      ]);
    });
    it('keeps an hourly schedule hourly through the overlap (no hour lost or doubled in UTC)', () => {
      const hourly = fireTimesBetween({ cron: '0 * * * *', timezone: 'Europe/Berlin' }, at('2026-10-24T23:30:00Z'), at('2026-10-25T03:30:00Z'), 10);
      expect(iso(hourly)).toEqual([
        '2026-10-25T00:00:00.000Z',
        '2026-10-25T01:00:00.000Z',
        '2026-10-25T02:00:00.000Z',
        '2026-10-25T03:00:00.000Z',
      ]);
    });
  });

  describe('daylight saving in America/New_York', () => {
    it('skips ahead over the spring-forward gap and fires once in the fall-back overlap', () => {
      const at0130 = { cron: '30 1 * * *', timezone: 'America/New_York' };
      // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
      expect(iso(nextFireTimes(at0130, at('2026-10-31T12:00:00Z'), 2))).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z']);
      const at0230 = { cron: '30 2 * * *', timezone: 'America/New_York' };
      // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
      expect(iso(nextFireTimes(at0230, at('2026-03-07T12:00:00Z'), 2))).toEqual(['2026-03-08T07:00:00.000Z', '2026-03-09T06:30:00.000Z']);
    });
  });
});

describe('fire plans', () => {
  const everySecond = { cron: '* * * * * *', timezone: 'UTC' };
  const everyMinute = { cron: '* * * * *', timezone: 'UTC' };

  it('fires a due time that is on time, and schedules the next', () => {
    const plan = planFires(everyMinute, at('2026-01-01T00:01:00Z'), at('2026-01-01T00:01:00.040Z'), 'none');
    expect(iso(plan.fire)).toEqual(['2026-01-01T00:01:00.000Z']);
    expect(plan).toMatchObject({ missed: 0, catchUpFireAt: null, nextRunAt: at('2026-01-01T00:02:00Z') });
  });

  it('fires nothing before the time', () => {
    const plan = planFires(everyMinute, at('2026-01-01T00:01:00Z'), at('2026-01-01T00:00:59Z'), 'none');
    expect(plan.fire).toEqual([]);
    expect(plan.nextRunAt).toBe(at('2026-01-01T00:01:00Z'));
  });

  it('skips fire times missed while the scheduler was down, by default', () => {
    // Down from 00:01 to 00:10:00.5: nine minutes of fire times were missed; 00:10 is on time.
    const plan = planFires(everyMinute, at('2026-01-01T00:01:00Z'), at('2026-01-01T00:10:00.500Z'), 'none');
    expect(iso(plan.fire)).toEqual(['2026-01-01T00:10:00.000Z']);
    expect(plan.missed).toBe(9);
    expect(plan.catchUpFireAt).toBeNull();
    expect(plan.nextRunAt).toBe(at('2026-01-01T00:11:00Z'));
  });

  it('with catchUp "once", creates one job for the whole missed window', () => {
    const plan = planFires(everyMinute, at('2026-01-01T00:01:00Z'), at('2026-01-01T00:10:30Z'), 'once');
    expect(plan.fire).toEqual([]);
    expect(plan.missed).toBe(10);
    expect(plan.catchUpFireAt).toBe(at('2026-01-01T00:10:00Z'));
    expect(plan.nextRunAt).toBe(at('2026-01-01T00:11:00Z'));
  });

  it('fires every on-time second of a seconds schedule, missing the rest', () => {
    const plan = planFires(everySecond, at('2026-01-01T00:00:00Z'), at('2026-01-01T00:00:10.200Z'), 'none');
    expect(plan.fire).toHaveLength(Math.ceil(MISFIRE_GRACE_MS / 1000));
    expect(plan.missed).toBe(11 - plan.fire.length);
    expect(plan.nextRunAt).toBe(at('2026-01-01T00:00:11Z'));
  });
});
