import type { Command } from 'commander';
import type { NewSchedule, Schedule } from '../../client/index.js';
import type { CliContext } from '../context.js';
import { CliError } from '../errors.js';
import { collect, integerOption, readJsonArgument } from '../input.js';
import { when } from '../output.js';

interface CreateOptions {
  cron: string;
  type: string;
  payload?: string;
  queue?: string;
  priority?: number;
  attempts?: number;
  tag?: string[];
  timezone?: string;
  overlap?: string;
  catchUp?: string;
  disabled?: boolean;
}

export function registerSchedules(program: Command, ctx: CliContext): void {
  const schedules = program.command('schedules').description('cron schedules that submit jobs');

  schedules
    .command('list', { isDefault: true })
    .description('list schedules and when each runs next')
    .action(async () => {
      const client = await ctx.client();
      const list = await client.schedules.list().toArray();
      const output = ctx.output;
      output.table(
        ['ID', 'NAME', 'CRON', 'TIMEZONE', 'JOB TYPE', 'STATUS', 'NEXT RUN', 'LAST RUN'],
        list.map((schedule) => [
          schedule.id,
          schedule.name,
          schedule.cron,
          schedule.timezone,
          String(schedule.job['type'] ?? '-'),
          schedule.enabled ? 'enabled' : output.color.yellow('paused'),
          when(schedule.nextRunAt),
          when(schedule.lastRunAt),
        ]),
        list,
        'no schedules',
      );
    });

  schedules
    .command('create')
    .description('create a schedule')
    .argument('<name>')
    .requiredOption('--cron <expression>', "5 fields (minute hour day month weekday), 6 with seconds first, or @daily etc.; quote it: '*/5 * * * *'")
    .requiredOption('--type <type>', 'the job type each run submits')
    .option('--payload <json>', 'the job payload: JSON, @file.json, or @- for stdin')
    .option('--queue <name>', 'the queue of the jobs')
    .option('--priority <n>', 'the priority of the jobs', integerOption('--priority', -1000, 1000))
    .option('--attempts <n>', 'tries per job', integerOption('--attempts', 1, 100))
    .option('--tag <tag>', 'a tag for the jobs (repeatable)', collect)
    .option('--timezone <zone>', 'an IANA zone such as Europe/Berlin (default UTC)')
    .option('--overlap <mode>', 'allow, or skip: no new job while the last one is queued or running')
    .option('--catch-up <mode>', 'none, or once: one job for runs missed while the scheduler was down')
    .option('--disabled', 'create it paused')
    .action(async (name: string, options: CreateOptions) => {
      const schedule = await newSchedule(ctx, name, options);
      const client = await ctx.client();
      said(ctx, 'created', await client.schedules.create(schedule));
    });

  schedules
    .command('pause')
    .description('stop a schedule from submitting jobs')
    .argument('<id>')
    .action(async (id: string) => {
      const client = await ctx.client();
      said(ctx, 'paused', await client.schedules.pause(id));
    });

  schedules
    .command('resume')
    .description('let a paused schedule submit jobs again')
    .argument('<id>')
    .action(async (id: string) => {
      const client = await ctx.client();
      said(ctx, 'resumed', await client.schedules.resume(id));
    });
}

async function newSchedule(ctx: CliContext, name: string, options: CreateOptions): Promise<NewSchedule> {
  const overlap = choice('--overlap', options.overlap, ['allow', 'skip'] as const);
  const catchUp = choice('--catch-up', options.catchUp, ['none', 'once'] as const);
  return {
    name,
    cron: options.cron,
    job: {
      type: options.type,
      ...(options.payload !== undefined ? { payload: await readJsonArgument('--payload', options.payload, ctx.io) } : {}),
      ...(options.queue !== undefined ? { queue: options.queue } : {}),
      ...(options.priority !== undefined ? { priority: options.priority } : {}),
      ...(options.attempts !== undefined ? { attempts: options.attempts } : {}),
      ...(options.tag !== undefined ? { tags: options.tag } : {}),
    },
    ...(options.timezone !== undefined ? { timezone: options.timezone } : {}),
    ...(overlap !== undefined ? { overlap } : {}),
    ...(catchUp !== undefined ? { catchUp } : {}),
    ...(options.disabled ? { enabled: false } : {}),
  };
}

function choice<T extends string>(flag: string, value: string | undefined, choices: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  const found = choices.find((known) => known === value);
  if (!found) throw new CliError(`${flag} must be ${choices.join(' or ')}, not '${value}'`);
  return found;
}

function said(ctx: CliContext, what: string, schedule: Schedule): void {
  const output = ctx.output;
  output.line(`${what} schedule ${schedule.id} (${schedule.name}, ${schedule.cron}); next run ${when(schedule.nextRunAt)}`);
  if (output.json) output.writeJson(schedule);
}
