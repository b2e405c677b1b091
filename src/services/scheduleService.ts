import type { Kysely, Selectable } from 'kysely';
import type { Database, SchedulesTable } from '../db/schema.js';
import { cronProblem, nextFireTimes } from '../scheduler/cron.js';
import type { CatchUp } from '../scheduler/plan.js';
import type { Clock } from '../utils/clock.js';
import { toIso, toIsoOrNull } from '../utils/clock.js';
import { errors } from '../utils/errors.js';
import { newId } from '../utils/ids.js';
import { decodeCursor, encodeCursor, type Page } from '../utils/pagination.js';
import type { Principal } from '../access/principal.js';
import type { JobInput, JobService } from './jobService.js';
import { toPublicJob, type PublicJob } from '../wire/jobs.js';

export type JobTemplate = Omit<JobInput, 'delay' | 'runAt' | 'idempotencyKey'>;

export interface ScheduleInput {
  name: string;
  cron: string;
  timezone?: string | undefined;
  job: JobTemplate;
  overlap?: 'allow' | 'skip' | undefined;
  catchUp?: CatchUp | undefined;
  enabled?: boolean | undefined;
}

export interface ScheduleRecord {
  id: string;
  ownerId: string;
  name: string;
  cron: string;
  timezone: string;
  job: JobTemplate;
  overlap: 'allow' | 'skip';
  catchUp: CatchUp;
  enabled: boolean;
  nextRunAt: number | null;
  lastRunAt: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface PublicSchedule {
  id: string;
  name: string;
  cron: string;
  timezone: string;
  job: JobTemplate;
  overlap: 'allow' | 'skip';
  catchUp: CatchUp;
  enabled: boolean;
  nextRunAt: string | null;
  lastRunAt: string | null;
  /** The next five fire times. */
  upcoming: string[];
  ownerId: string;
  createdAt: string;
  updatedAt: string;
}

function toRecord(row: Selectable<SchedulesTable>): ScheduleRecord {
  return {
    id: row.id,
    ownerId: row.owner_id,
    name: row.name,
    cron: row.cron,
    timezone: row.timezone,
    job: JSON.parse(row.job) as JobTemplate,
    overlap: row.overlap,
    catchUp: row.catch_up,
    enabled: row.enabled === 1,
    nextRunAt: row.next_run_at === null ? null : Number(row.next_run_at),
    lastRunAt: row.last_run_at === null ? null : Number(row.last_run_at),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

/** Schedules in SQL: what the scheduler reads and moves on. Portable between SQLite and PostgreSQL. */
export class ScheduleStore {
  constructor(private readonly db: Kysely<Database>) {}

  async due(now: number): Promise<ScheduleRecord[]> {
    const rows = await this.db
      .selectFrom('schedules')
      .selectAll()
      .where('enabled', '=', 1)
      .where('next_run_at', '<=', now)
      .orderBy('next_run_at')
      .limit(500)
      .execute();
    return rows.map(toRecord);
  }

  async earliestNextRun(): Promise<number | null> {
    const row = await this.db
      .selectFrom('schedules')
      .select((eb) => eb.fn.min('next_run_at').as('next'))
      .where('enabled', '=', 1)
      .executeTakeFirst();
    return row?.next == null ? null : Number(row.next);
  }

  /**
   * Moves nextRunAt on, only if it is still what the caller read (compare and set). lastRunAt, the
   * fire time of a job the caller created, is recorded even when that compare fails (another
   * scheduler process moved on first, or the schedule was changed or disabled meanwhile): the job
   * exists. It only ever moves forward.
   */
  async advance(id: string, expected: number, nextRunAt: number | null, lastRunAt: number | null): Promise<boolean> {
    const result = await this.db
      .updateTable('schedules')
      .set({ next_run_at: nextRunAt })
      .where('id', '=', id)
      .where('next_run_at', '=', expected)
      .executeTakeFirst();
    if (lastRunAt !== null) {
      await this.db
        .updateTable('schedules')
        .set({ last_run_at: lastRunAt })
        .where('id', '=', id)
        .where((eb) => eb.or([eb('last_run_at', 'is', null), eb('last_run_at', '<', lastRunAt)]))
        .execute();
    }
    return Number(result.numUpdatedRows) === 1;
  }

  async count(): Promise<number> {
    const row = await this.db.selectFrom('schedules').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }
}

/** Cron schedules: owned like jobs (a user sees their own, an admin all). */
export class ScheduleService {
  /** Told when a schedule changes, so a scheduler in this process looks again at once. */
  onChange: () => void = () => undefined;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly jobs: JobService,
    private readonly clock: Clock,
  ) {}

  async create(principal: Principal, input: ScheduleInput): Promise<PublicSchedule> {
    const timezone = input.timezone ?? 'UTC';
    this.validate(principal.userId, { cron: input.cron, timezone }, input.job);
    const now = this.clock.now();
    const enabled = input.enabled ?? true;
    const row: Selectable<SchedulesTable> = {
      id: newId(),
      owner_id: principal.userId,
      name: input.name,
      cron: input.cron.trim(),
      timezone,
      job: JSON.stringify(input.job),
      overlap: input.overlap ?? 'allow',
      catch_up: input.catchUp ?? 'none',
      enabled: enabled ? 1 : 0,
      next_run_at: enabled ? this.nextRun({ cron: input.cron, timezone }, now) : null,
      last_run_at: null,
      created_at: now,
      updated_at: now,
    };
    await this.db.insertInto('schedules').values(row).execute();
    this.onChange();
    return this.toPublic(toRecord(row));
  }

  async list(principal: Principal, options: { limit: number; cursor?: string | undefined }): Promise<Page<PublicSchedule>> {
    let query = this.db.selectFrom('schedules').selectAll().orderBy('id', 'desc').limit(options.limit + 1);
    if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.userId);
    if (options.cursor) query = query.where('id', '<', String(decodeCursor('schedules', options.cursor)[0]));
    const rows = await query.execute();
    const page = rows.slice(0, options.limit);
    const last = page.at(-1);
    return {
      items: page.map((row) => this.toPublic(toRecord(row))),
      nextCursor: rows.length > options.limit && last ? encodeCursor('schedules', [last.id]) : null,
    };
  }

  async get(principal: Principal, id: string): Promise<PublicSchedule> {
    return this.toPublic(await this.visible(principal, id));
  }

  async update(principal: Principal, id: string, change: Partial<ScheduleInput>): Promise<PublicSchedule> {
    const current = await this.visible(principal, id);
    const next = { ...current, ...definedOnly(change) };
    this.validate(current.ownerId, next, next.job);
    const now = this.clock.now();
    // A new expression, zone or enabling starts counting from now; otherwise the plan stands.
    const replan = change.cron !== undefined || change.timezone !== undefined || (change.enabled === true && !current.enabled);
    const nextRunAt = !next.enabled ? null : replan || current.nextRunAt === null ? this.nextRun(next, now) : current.nextRunAt;
    await this.db
      .updateTable('schedules')
      .set({
        name: next.name,
        cron: next.cron.trim(),
        timezone: next.timezone,
        job: JSON.stringify(next.job),
        overlap: next.overlap,
        catch_up: next.catchUp,
        enabled: next.enabled ? 1 : 0,
        next_run_at: nextRunAt,
        updated_at: now,
      })
      .where('id', '=', id)
      .execute();
    this.onChange();
    return this.get(principal, id);
  }

  async delete(principal: Principal, id: string): Promise<void> {
    await this.visible(principal, id);
    await this.db.deleteFrom('schedules').where('id', '=', id).execute();
    this.onChange();
  }

  /** Runs the schedule's job now, outside its plan (the job carries scheduleId; no fire time). */
  async trigger(principal: Principal, id: string): Promise<PublicJob> {
    const schedule = await this.visible(principal, id);
    const job = this.jobs.buildJob(schedule.ownerId, schedule.job, { scheduleId: schedule.id, fireAt: null });
    return toPublicJob((await this.jobs.addJob(job)).job);
  }

  private async visible(principal: Principal, id: string): Promise<ScheduleRecord> {
    const row = await this.db.selectFrom('schedules').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row || (principal.role !== 'admin' && row.owner_id !== principal.userId)) throw errors.scheduleNotFound();
    return toRecord(row);
  }

  private validate(ownerId: string, spec: { cron: string; timezone: string }, job: JobTemplate): void {
    const problem = cronProblem(spec);
    if (problem) throw errors.validation(`The request is invalid: body.${problem.field}: ${problem.message}`, [{ path: `body.${problem.field}`, message: problem.message }]);
    // The template must be a job one could submit now: a known type, a payload within limits.
    this.jobs.buildJob(ownerId, job);
  }

  private nextRun(spec: { cron: string; timezone: string }, after: number): number | null {
    return nextFireTimes(spec, after, 1)[0] ?? null;
  }

  private toPublic(record: ScheduleRecord): PublicSchedule {
    const upcoming = record.enabled ? nextFireTimes(record, Math.max(this.clock.now(), (record.nextRunAt ?? 0) - 1), 5) : [];
    return {
      id: record.id,
      name: record.name,
      cron: record.cron,
      timezone: record.timezone,
      job: record.job,
      overlap: record.overlap,
      catchUp: record.catchUp,
      enabled: record.enabled,
      nextRunAt: toIsoOrNull(record.nextRunAt),
      lastRunAt: toIsoOrNull(record.lastRunAt),
      upcoming: upcoming.map(toIso),
      ownerId: record.ownerId,
      createdAt: toIso(record.createdAt),
      updatedAt: toIso(record.updatedAt),
    };
  }
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, member]) => member !== undefined)) as Partial<T>;
}
