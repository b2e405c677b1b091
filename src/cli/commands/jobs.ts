import type { Command } from 'commander';
import type { Job, JobSubmission } from '../../client/index.js';
import type { CliContext } from '../context.js';
import { collect, durationOption, integerOption, readJsonArgument } from '../input.js';
import { brief, when, type Output } from '../output.js';
import { filterQuery, withFilters, type FilterOptions } from './filters.js';
import { registerJobActions } from './jobActions.js';
import { followJob, reportOutcome, waitForJob } from './follow.js';

interface SubmitOptions {
  payload?: string;
  queue?: string;
  priority?: number;
  delay?: number;
  attempts?: number;
  tag?: string[];
  idempotencyKey?: string;
  wait?: boolean;
  timeout?: number;
}

interface ListOptions extends FilterOptions {
  limit: number;
  all?: boolean;
}

const PAGE_MAX = 200;

export function registerJobs(program: Command, ctx: CliContext): void {
  const jobs = program.command('jobs').description('submit, list, inspect, follow and manage jobs');

  jobs
    .command('submit')
    .description('submit a job')
    .argument('<type>', 'the job type, e.g. http or a handler of yours')
    .option('--payload <json>', "the payload: JSON, @file.json, or @- for stdin")
    .option('--queue <name>', 'the queue (default: the handler\'s, else "default")')
    .option('--priority <n>', 'higher runs first, -1000 to 1000', integerOption('--priority', -1000, 1000))
    .option('--delay <duration>', 'run no sooner than this from now: 500ms, 30s, 5m, 2h', durationOption('--delay'))
    .option('--attempts <n>', 'tries in all (default 3)', integerOption('--attempts', 1, 100))
    .option('--tag <tag>', 'a tag (repeatable, or comma-separated)', collect)
    .option('--idempotency-key <key>', 'submitting again with the same key returns the same job')
    .option('--wait', 'wait for the job to finish; exit 0 completed, 1 failed, 2 cancelled')
    .option('--timeout <duration>', 'with --wait: give up after this long (exit 3)', durationOption('--timeout'))
    .action((type: string, options: SubmitOptions) => submit(ctx, type, options));

  withFilters(jobs.command('list').description('list jobs, newest first'))
    .option('--limit <n>', 'show at most this many (default 50)', integerOption('--limit', 1, 1_000_000), 50)
    .option('--all', 'show every matching job')
    .action((options: ListOptions) => list(ctx, options));

  jobs
    .command('get')
    .description('show one job')
    .argument('<id>')
    .action(async (id: string) => {
      const client = await ctx.client();
      const job = await client.jobs.get(id);
      showJob(ctx.output, job);
    });

  jobs
    .command('follow')
    .description('stream a job: its output to stdout, progress on stderr; exit 0 completed, 1 failed, 2 cancelled')
    .argument('<id>')
    .option('--from-seq <n>', 'replay only events after this seq (default 0: everything)', integerOption('--from-seq', 0, Number.MAX_SAFE_INTEGER), 0)
    .action((id: string, options: { fromSeq: number }) => followJob(ctx, id, options.fromSeq));

  registerJobActions(jobs, ctx);
}

async function submit(ctx: CliContext, type: string, options: SubmitOptions): Promise<void> {
  const submission: JobSubmission = {
    type,
    ...(options.payload !== undefined ? { payload: await readJsonArgument('--payload', options.payload, ctx.io) } : {}),
    ...(options.queue !== undefined ? { queue: options.queue } : {}),
    ...(options.priority !== undefined ? { priority: options.priority } : {}),
    ...(options.delay !== undefined ? { delay: options.delay } : {}),
    ...(options.attempts !== undefined ? { attempts: options.attempts } : {}),
    ...(options.tag !== undefined ? { tags: options.tag } : {}),
  };
  const client = await ctx.client();
  const output = ctx.output;
  const { job, created, deduplicatedBy } = await client.jobs.submit(submission, options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {});
  output.line(
    created
      ? `submitted job ${output.color.bold(job.id)} (${job.type} on ${job.queue}, ${output.state(job.state)})`
      : `job ${output.color.bold(job.id)} already existed (same ${deduplicatedBy ?? 'key'}); nothing new submitted`,
  );
  if (!options.wait) {
    if (output.json) output.writeJson(job);
    return;
  }
  const finished = await waitForJob(ctx, client, job.id, options.timeout);
  if (output.json) output.writeJson(finished);
  reportOutcome(ctx, finished);
}

async function list(ctx: CliContext, options: ListOptions): Promise<void> {
  const max = options.all ? Infinity : options.limit;
  const client = await ctx.client();
  const paged = client.jobs.list({ ...filterQuery(options), limit: Math.min(PAGE_MAX, max) });
  const jobs: Job[] = [];
  let more = false;
  for await (const job of paged) {
    if (jobs.length >= max) {
      more = true;
      break;
    }
    jobs.push(job);
  }
  const output = ctx.output;
  output.table(
    ['ID', 'TYPE', 'QUEUE', 'STATE', 'TRIES', 'CREATED'],
    jobs.map((job) => [job.id, job.type, job.queue, output.state(job.state), `${job.attemptsMade}/${job.maxAttempts}`, when(job.createdAt)]),
    jobs,
    'no jobs match',
  );
  if (more && !output.json) output.note(`showing the first ${jobs.length}; more match (--limit N or --all)`);
}

function showJob(output: Output, job: Job): void {
  output.record(
    [
      ['id', job.id],
      ['type', job.type],
      ['queue', job.queue],
      ['state', output.state(job.state)],
      ['tries', `${job.attemptsMade} of ${job.maxAttempts}`],
      ['priority', String(job.priority)],
      ['tags', job.tags.length > 0 ? job.tags.join(', ') : '-'],
      ['created', when(job.createdAt)],
      ['run at', when(job.runAt)],
      ['started', when(job.startedAt)],
      ['finished', when(job.finishedAt)],
      ['progress', brief(job.progress, 200)],
      ['payload', brief(job.payload, 200)],
      ['result', brief(job.result, 200)],
      ['error', job.error ? `${job.error.message}${job.error.code ? ` (${job.error.code})` : ''}` : '-'],
    ],
    job,
  );
}
