import type { Command } from 'commander';
import type { Job, JoblineClient, ListJobsQuery } from '../../client/index.js';
import type { CliContext } from '../context.js';
import { CliError, describeError } from '../errors.js';
import { confirm } from '../input.js';
import { filterQuery, withFilters, type FilterOptions } from './filters.js';

type Action = 'retry' | 'cancel' | 'delete';

const PAST: Record<Action, string> = { retry: 'retried', cancel: 'cancelled', delete: 'deleted' };
/** Requests in flight at once when acting on many jobs: quicker than one by one, gentle on the server. */
const PARALLEL = 8;
/** Matching more than this many jobs is refused: a filter that broad is likely a mistake. */
const MAX_BY_FILTER = 100_000;

interface ActionOptions extends FilterOptions {
  yes?: boolean;
}

interface ActionResult {
  id: string;
  ok: boolean;
  state?: string;
  error?: string;
}

export function registerJobActions(jobs: Command, ctx: CliContext): void {
  const descriptions: Record<Action, string> = {
    retry: 'run failed or cancelled jobs again',
    cancel: 'cancel queued, scheduled or running jobs',
    delete: 'delete jobs and their events',
  };
  for (const action of ['retry', 'cancel', 'delete'] as const) {
    withFilters(jobs.command(action).description(`${descriptions[action]}: by ID, or every job matching a filter`))
      .argument('[ids...]', 'job IDs (or give a filter instead)')
      .option('-y, --yes', 'act on the jobs a filter matches without asking')
      .action((ids: string[], options: ActionOptions) => act(ctx, action, ids, options));
  }
}

async function act(ctx: CliContext, action: Action, ids: string[], options: ActionOptions): Promise<void> {
  const query = filterQuery(options);
  const byFilter = Object.keys(query).length > 0;
  if (byFilter && ids.length > 0) throw new CliError(`give job IDs or a filter, not both`, `see jobline jobs ${action} --help`);
  if (!byFilter && ids.length === 0) throw new CliError(`jobs ${action} needs job IDs or a filter (--state, --queue, --type, --tag)`, `see jobline jobs ${action} --help`);
  const client = await ctx.client();
  const targets = byFilter ? await matching(ctx, client, action, query, options.yes === true) : ids;
  if (targets.length === 0) return;
  const results = await inParallel(targets, (id) => actOn(ctx, client, action, id));
  report(ctx, action, results);
}

/** Lists what the filter matches, says how many, and asks before going on (unless --yes). */
async function matching(ctx: CliContext, client: JoblineClient, action: Action, query: ListJobsQuery, yes: boolean): Promise<string[]> {
  const ids: string[] = [];
  for await (const job of client.jobs.list({ ...query, limit: 200 })) {
    ids.push(job.id);
    if (ids.length > MAX_BY_FILTER) throw new CliError(`more than ${MAX_BY_FILTER} jobs match`, 'narrow the filter');
  }
  const filter = Object.entries(query)
    .map(([key, value]) => `${key}=${String(value)}`)
    .join(', ');
  const output = ctx.output;
  if (ids.length === 0) {
    output.note(`no jobs match ${filter}; nothing to ${action}`);
    if (output.json) output.writeJson([]);
    return [];
  }
  const count = `${ids.length} job${ids.length === 1 ? '' : 's'}`;
  output.note(`${count} ${ids.length === 1 ? 'matches' : 'match'} ${filter}`);
  if (!yes && !(await confirm(ctx.io, `${action} ${count}?`, `refusing to ${action} ${count} without confirmation`))) {
    throw new CliError(`nothing was ${PAST[action]}`, undefined, 1);
  }
  return ids;
}

async function actOn(ctx: CliContext, client: JoblineClient, action: Action, id: string): Promise<ActionResult> {
  try {
    let job: Job | null = null;
    if (action === 'retry') job = await client.jobs.retry(id);
    else if (action === 'cancel') job = await client.jobs.cancel(id);
    else await client.jobs.delete(id);
    return { id, ok: true, ...(job ? { state: job.state } : {}) };
  } catch (error) {
    return { id, ok: false, error: describeError(error, { url: ctx.url }) };
  }
}

function report(ctx: CliContext, action: Action, results: ActionResult[]): void {
  const output = ctx.output;
  const failed = results.filter((result) => !result.ok);
  if (output.json) output.writeJson(results);
  else {
    for (const result of results) {
      if (result.ok) output.line(`${PAST[action]} ${result.id}${result.state ? ` (now ${output.state(result.state)})` : ''}`);
      else output.note(`jobline: could not ${action} ${result.id}: ${result.error ?? 'unknown error'}`);
    }
    if (results.length > 1) output.note(`${results.length - failed.length} of ${results.length} ${PAST[action]}`);
  }
  if (failed.length > 0) ctx.exitCode = 1;
}

async function inParallel<T, R>(items: readonly T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(PARALLEL, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  });
  await Promise.all(lanes);
  return results;
}
