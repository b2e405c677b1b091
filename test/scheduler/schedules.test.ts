import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, eventually, registerProbeHandlers } from '../conformance/harness.js';
import { problemOf, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

interface ScheduleView {
  id: string;
  nextRunAt: string | null;
  lastRunAt: string | null;
  upcoming: string[];
  enabled: boolean;
}

interface JobRow {
  id: string;
  scheduleId: string | null;
  runAt: string;
  createdAt: string;
  state: string;
}

describe('schedules', () => {
  let server: TestRuntime;
  let client: Client;
  let other: Client;

  beforeAll(async () => {
    server = await startTestRuntime({ handlers: registerProbeHandlers });
    client = new Client(server, (await server.login()).accessToken);
    await server.createUser('sched-other@example.com', 'other-password-1');
    other = new Client(server, (await server.login('sched-other@example.com', 'other-password-1')).accessToken);
  });
  afterAll(async () => server.close());

  const create = async (body: Record<string, unknown>, token = client.token) =>
    server.request({ method: 'POST', url: '/v1/schedules', token, body });
  const jobsOf = async (scheduleId: string): Promise<JobRow[]> => {
    const all: JobRow[] = [];
    let cursor: string | null = null;
    do {
      const page: { items: JobRow[]; nextCursor: string | null } = (await server.request({ method: 'GET', url: `/v1/jobs?limit=200${cursor ? `&cursor=${cursor}` : ''}`, token: client.token })).json();
      all.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    return all.filter((job) => job.scheduleId === scheduleId);
  };

  describe('the API', () => {
    it('creates a schedule with its next run and the next five fire times', async () => {
      const response = await create({ name: 'nightly', cron: '0 3 * * *', timezone: 'Europe/Berlin', job: { type: 'echo', payload: { a: 1 } } });
      expect(response.statusCode).toBe(201);
      const schedule = response.json();
      expect(schedule).toMatchObject({ name: 'nightly', cron: '0 3 * * *', timezone: 'Europe/Berlin', overlap: 'allow', catchUp: 'none', enabled: true, lastRunAt: null });
      expect(schedule.upcoming).toHaveLength(5);
      expect(schedule.upcoming[0]).toBe(schedule.nextRunAt);
      // 03:00 in Berlin is 01:00 or 02:00 UTC, depending on the season.
      for (const time of schedule.upcoming) expect(new Date(time).getUTCHours()).toBeOneOf([1, 2]);
    });

    it('refuses a bad expression, time zone or job template with 400 naming the field', async () => {
      const badCron = await create({ name: 'x', cron: '61 * * * *', job: { type: 'echo' } });
      expect(badCron.statusCode).toBe(400);
      expect(problemOf(badCron).errors?.[0]?.path).toBe('body.cron');
      const fourFields = await create({ name: 'x', cron: '* * * *', job: { type: 'echo' } });
      expect(problemOf(fourFields).errors?.[0]?.path).toBe('body.cron');
      const badZone = await create({ name: 'x', cron: '* * * * *', timezone: 'Mars/Olympus', job: { type: 'echo' } });
      expect(problemOf(badZone).errors?.[0]?.path).toBe('body.timezone');
      const unknownType = await create({ name: 'x', cron: '* * * * *', job: { type: 'nope' } });
      expect(unknownType.statusCode).toBe(400);
      expect(problemOf(unknownType).code).toBe('JOBLINE_UNKNOWN_JOB_TYPE');
      const withDelay = await create({ name: 'x', cron: '* * * * *', job: { type: 'echo', delay: 5 } });
      expect(problemOf(withDelay).errors?.[0]?.path).toBe('body.job.delay');
    });

    it('keeps schedules to their owner', async () => {
      const mine = (await create({ name: 'mine', cron: '@daily', job: { type: 'echo' } })).json();
      expect((await server.request({ method: 'GET', url: `/v1/schedules/${mine.id}`, token: other.token })).statusCode).toBe(404);
      expect((await server.request({ method: 'DELETE', url: `/v1/schedules/${mine.id}`, token: other.token })).statusCode).toBe(404);
      const theirList = (await server.request({ method: 'GET', url: '/v1/schedules', token: other.token })).json();
      expect(theirList.items.map((item: { id: string }) => item.id)).not.toContain(mine.id);
    });

    it('disables, re-enables (planning from now), updates and deletes', async () => {
      const schedule = (await create({ name: 'toggle', cron: '0 * * * *', job: { type: 'echo' } })).json();
      const disabled = (await server.request({ method: 'PATCH', url: `/v1/schedules/${schedule.id}`, token: client.token, body: { enabled: false } })).json();
      expect(disabled).toMatchObject({ enabled: false, nextRunAt: null, upcoming: [] });
      const enabled = (await server.request({ method: 'PATCH', url: `/v1/schedules/${schedule.id}`, token: client.token, body: { enabled: true, cron: '30 * * * *' } })).json();
      expect(new Date(enabled.nextRunAt).getUTCMinutes()).toBe(30);
      expect((await server.request({ method: 'DELETE', url: `/v1/schedules/${schedule.id}`, token: client.token })).statusCode).toBe(204);
      expect((await server.request({ method: 'GET', url: `/v1/schedules/${schedule.id}`, token: client.token })).statusCode).toBe(404);
    });

    it('triggers a run now, carrying the schedule id', async () => {
      const schedule = (await create({ name: 'manual', cron: '0 0 1 1 *', job: { type: 'echo', payload: { hello: 'now' } } })).json();
      const triggered = await server.request({ method: 'POST', url: `/v1/schedules/${schedule.id}/trigger`, token: client.token });
      expect(triggered.statusCode).toBe(201);
      const job = await client.waitFor(triggered.json().id);
      expect(job).toMatchObject({ state: 'completed', result: { echoed: { hello: 'now' } } });
      expect(triggered.json().scheduleId).toBe(schedule.id);
    });
  });

  describe('firing', () => {
    const disable = (id: string) => server.request({ method: 'PATCH', url: `/v1/schedules/${id}`, token: client.token, body: { enabled: false } });
    const view = async (id: string) => (await server.request({ method: 'GET', url: `/v1/schedules/${id}`, token: client.token })).json<ScheduleView & { createdAt: string; updatedAt: string }>();
    /** One sample of jobline_schedule_skips_total (0 before the first skip of that reason). */
    const skips = async (reason: string) => {
      const metrics = (await server.request({ method: 'GET', url: '/metrics' })).body;
      const line = metrics.split('\n').find((candidate) => candidate.startsWith(`jobline_schedule_skips_total{reason="${reason}"} `));
      return line === undefined ? 0 : Number(line.split(' ')[1]);
    };

    it('creates one job per fire time, with runAt the fire time and the schedule id', async () => {
      const schedule = (await create({ name: 'every-second', cron: '* * * * * *', job: { type: 'echo' } })).json<ScheduleView & { createdAt: string }>();
      // Three fire times, however long a loaded machine takes to get there.
      await eventually(async () => (await jobsOf(schedule.id)).length >= 3, 'three jobs of the schedule', 15_000);
      // lastRunAt follows the fire times (a fire may land between the two reads: look again).
      await eventually(async () => {
        const lastRunAt = (await view(schedule.id)).lastRunAt;
        const fireTimes = (await jobsOf(schedule.id)).map((job) => Date.parse(job.runAt));
        return lastRunAt !== null && Math.max(...fireTimes) === Date.parse(lastRunAt);
      }, 'lastRunAt to be the latest fire time');
      const disabled = (await disable(schedule.id)).json<{ updatedAt: string }>();
      const jobs = await jobsOf(schedule.id);
      const from = Date.parse(schedule.createdAt);
      const to = Date.parse(disabled.updatedAt);
      const fireTimes = jobs.map((job) => Date.parse(job.runAt));
      expect(jobs.length).toBeGreaterThanOrEqual(3);
      // At most one job per whole second the schedule was enabled, each at its second, none twice.
      expect(jobs.length).toBeLessThanOrEqual(Math.floor(to / 1000) - Math.floor(from / 1000));
      expect(new Set(fireTimes).size).toBe(fireTimes.length);
      for (const fireAt of fireTimes) {
        expect(fireAt % 1000).toBe(0);
        expect(fireAt).toBeGreaterThan(from);
        expect(fireAt).toBeLessThanOrEqual(to);
      }
      // Created at its fire time (milliseconds late here; the bound leaves room for a loaded machine).
      for (const job of jobs) expect(Date.parse(job.createdAt) - Date.parse(job.runAt)).toBeLessThan(2000);
    });

    it('creates no second job when a fire time is processed again (a crash before nextRunAt moved on)', async () => {
      const schedule = (await create({ name: 'replayed', cron: '* * * * * *', job: { type: 'echo' } })).json<ScheduleView>();
      await eventually(async () => (await jobsOf(schedule.id)).length >= 1, 'the first job of the schedule', 15_000);
      await disable(schedule.id);
      const fired = await jobsOf(schedule.id);
      expect(fired.length).toBeGreaterThanOrEqual(1);
      const firstFireAt = Math.min(...fired.map((job) => Date.parse(job.runAt)));
      // Rewind as a crash between creating the job and advancing the schedule would leave it.
      const { db } = server.runtime.database;
      await db.updateTable('schedules').set({ enabled: 1, next_run_at: firstFireAt }).where('id', '=', schedule.id).execute();
      server.runtime.scheduler?.wake();
      // The scheduler has processed the rewound fire time once nextRunAt moves past it.
      await eventually(async () => {
        const nextRunAt = (await view(schedule.id)).nextRunAt;
        return nextRunAt !== null && Date.parse(nextRunAt) > firstFireAt;
      }, 'the scheduler to process the rewound fire time');
      await disable(schedule.id);
      const after = await jobsOf(schedule.id);
      const fireTimes = after.map((job) => job.runAt);
      expect(new Set(fireTimes).size).toBe(fireTimes.length);
      // And the database itself refuses a second job for the same schedule and fire time.
      const template = { type: 'echo', queue: 'default', payload: null, priority: 0, runAt: firstFireAt, maxAttempts: 1, backoff: { type: 'fixed' as const, delay: 0 }, timeoutMs: null, ttlMs: null, idempotencyKey: null, singletonKey: null, tags: [], ownerId: fired[0]!.id, scheduleId: schedule.id, fireAt: firstFireAt };
      const [again] = await server.runtime.engine.addJobs([template]);
      expect(again).toMatchObject({ created: false, deduplicatedBy: 'fireTime' });
      await expect(
        db.insertInto('jobs').values({ ...(await db.selectFrom('jobs').selectAll().where('schedule_id', '=', schedule.id).where('fire_at', '=', firstFireAt).executeTakeFirstOrThrow()), id: '00000000-0000-7000-8000-000000000001' }).execute(),
      ).rejects.toThrow(/UNIQUE|unique/);
    });

    it('records lastRunAt for a job it created even when another process moved nextRunAt on first, and never moves it back', async () => {
      const schedule = (await create({ name: 'raced', cron: '0 3 * * *', job: { type: 'echo' } })).json<ScheduleView>();
      const store = server.runtime.services.scheduleStore;
      const planned = Date.parse(schedule.nextRunAt!);
      // Another scheduler process advanced first (it found the job already created: no lastRunAt of its own).
      expect(await store.advance(schedule.id, planned, planned + 86_400_000, null)).toBe(true);
      // This process created the job for `planned`; its compare fails, its fire time is still recorded.
      expect(await store.advance(schedule.id, planned, planned + 86_400_000, planned)).toBe(false);
      expect(await view(schedule.id)).toMatchObject({ lastRunAt: new Date(planned).toISOString(), nextRunAt: new Date(planned + 86_400_000).toISOString() });
      // A slower process reporting an older fire time does not move it back.
      await store.advance(schedule.id, planned, planned + 86_400_000, planned - 86_400_000);
      expect((await view(schedule.id)).lastRunAt).toBe(new Date(planned).toISOString());
    });

    it('skips, and moves past, fire times whose job can no longer be built, without spinning', async () => {
      const schedule = (await create({ name: 'broken', cron: '* * * * * *', job: { type: 'echo' } })).json<ScheduleView & { createdAt: string }>();
      // As if the handler had been removed since: the template names an unknown type.
      const { db } = server.runtime.database;
      await db.updateTable('schedules').set({ job: JSON.stringify({ type: 'gone' }) }).where('id', '=', schedule.id).execute();
      const logged = () => server.logs.filter((line) => String(line['msg']).includes('could not create its job')).length;
      const before = logged();
      const skippedBefore = await skips('error');
      // Two fire times skipped, then the schedule is stopped.
      await eventually(() => logged() - before >= 2, 'two skipped fire times', 15_000);
      await server.request({ method: 'PATCH', url: `/v1/schedules/${schedule.id}`, token: client.token, body: { enabled: false } }).catch(() => undefined);
      await db.updateTable('schedules').set({ enabled: 0 }).where('id', '=', schedule.id).execute();
      const enabledMs = Date.now() - Date.parse(schedule.createdAt);
      // About one skip per second it was enabled (one more for a tick in flight), not hundreds.
      expect(logged() - before).toBeGreaterThanOrEqual(2);
      expect(logged() - before).toBeLessThanOrEqual(Math.ceil(enabledMs / 1000) + 1);
      expect(await skips('error')).toBeGreaterThanOrEqual(skippedBefore + 2);
    });

    it('with overlap "skip", creates no job while the previous one is still running', async () => {
      const schedule = (await create({ name: 'slow', cron: '* * * * * *', overlap: 'skip', job: { type: 'sleepy', payload: { ms: 2500 } } })).json<ScheduleView & { createdAt: string }>();
      const skippedBefore = await skips('overlap');
      // A fire time passed while the first job held the schedule.
      await eventually(async () => (await skips('overlap')) > skippedBefore, 'a fire time skipped for overlap', 15_000);
      const disabled = (await disable(schedule.id)).json<{ updatedAt: string }>();
      const enabledMs = Date.parse(disabled.updatedAt) - Date.parse(schedule.createdAt);
      const jobs = await jobsOf(schedule.id);
      expect(jobs.length).toBeGreaterThanOrEqual(1);
      // A job holds the schedule for at least its 2.5 s run, so no job is created sooner than that
      // after the one before it (a fire time processed late does not change this).
      const createdAt = jobs.map((job) => Date.parse(job.createdAt)).sort((a, b) => a - b);
      for (let i = 1; i < createdAt.length; i += 1) expect(createdAt[i]! - createdAt[i - 1]!).toBeGreaterThanOrEqual(2400);
      // (one more for a tick that read the schedule just before it was disabled)
      expect(jobs.length).toBeLessThanOrEqual(Math.floor(enabledMs / 2400) + 2);
    });

    it('skips fire times missed during an outage by default, and catches up once when asked', async () => {
      // Yearly schedules three years overdue: every due fire time is long past the grace period.
      const skipping = (await create({ name: 'skipper', cron: '0 0 1 1 *', job: { type: 'echo' } })).json();
      const catching = (await create({ name: 'catcher', cron: '0 0 1 1 *', catchUp: 'once', job: { type: 'echo' } })).json();
      const year = new Date().getUTCFullYear();
      const overdueSince = Date.UTC(year - 3, 0, 1);
      const lastMissed = Date.UTC(year, 0, 1);
      const missedBefore = await skips('missed');
      await server.runtime.database.db.updateTable('schedules').set({ next_run_at: overdueSince }).where('id', 'in', [skipping.id, catching.id]).execute();
      server.runtime.scheduler?.wake();
      // Both processed: their next run moved on to next New Year.
      await eventually(async () => {
        for (const id of [skipping.id, catching.id]) {
          if (Date.parse((await view(id)).nextRunAt ?? '') !== Date.UTC(year + 1, 0, 1)) return false;
        }
        return true;
      }, 'the scheduler to process both overdue schedules');
      expect(await jobsOf(skipping.id)).toEqual([]);
      const caughtUp = await jobsOf(catching.id);
      expect(caughtUp).toHaveLength(1);
      expect(Date.parse(caughtUp[0]!.runAt)).toBe(lastMissed);
      // Four fire times each (three past New Years and this one) were missed.
      expect((await skips('missed')) - missedBefore).toBe(8);
    });
  });
});
