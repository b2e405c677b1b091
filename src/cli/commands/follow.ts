import { isFinished, type Job, type JobEvent, type JoblineClient } from '../../client/index.js';
import type { CliContext } from '../context.js';
import { ProgressView } from '../progress.js';

/** Exit codes for a job's outcome, the same for `jobs follow` and `jobs submit --wait`. */
export const OUTCOME_EXIT: Record<string, number> = { completed: 0, failed: 1, cancelled: 2 };
/** `--wait --timeout` ran out with the job still unfinished. */
export const STILL_RUNNING_EXIT = 3;
/** What shells report for a command ended by SIGINT. */
const INTERRUPTED_EXIT = 130;

const FINAL: Record<string, string> = { 'job.completed': 'completed', 'job.failed': 'failed', 'job.cancelled': 'cancelled' };

/** Where a followed job's events go: stdout for its output, stderr for everything else. */
interface EventSink {
  output(text: string): void;
  progress(value: unknown): void;
  state(label: string): void;
  note(text: string): void;
  stop(): void;
}

function sinkFor(ctx: CliContext): EventSink {
  if (ctx.io.stderr.isTTY === true) {
    const view = new ProgressView(ctx.io);
    return {
      output: (text) => view.writeOutput(text),
      progress: (value) => view.setProgress(value),
      state: (label) => view.setState(label),
      note: (text) => view.note(text),
      stop: () => view.stop(),
    };
  }
  return {
    output: (text) => void ctx.io.stdout.write(text),
    // Off a terminal a bar would be noise in a log; progress is in `--json` events for scripts.
    progress: () => undefined,
    state: () => undefined,
    note: (text) => void ctx.io.stderr.write(`${text}\n`),
    stop: () => undefined,
  };
}

/**
 * `jobs follow ID`: replays the job's events after `fromSeq`, then follows it live until its
 * final event. In --json mode each event is one JSON line on stdout.
 */
export async function followJob(ctx: CliContext, id: string, fromSeq: number): Promise<void> {
  const client = await ctx.client();
  const json = ctx.globals.json === true;
  const sink = json ? null : sinkFor(ctx);
  let outcome: string | null = null;
  let failure: unknown = null;
  // Ctrl-C stops following (the bar is cleared first); the job itself goes on.
  const interrupted = new AbortController();
  const onInterrupt = () => interrupted.abort();
  process.once('SIGINT', onInterrupt);
  try {
    for await (const event of client.jobs.follow(id, { fromSeq, signal: interrupted.signal })) {
      if (json) ctx.io.stdout.write(`${JSON.stringify(event)}\n`);
      else if (sink) show(sink, event);
      outcome = FINAL[event.type] ?? outcome;
      if (event.type === 'job.failed') failure = event.data['error'];
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    sink?.stop();
  }
  if (interrupted.signal.aborted) {
    ctx.exitCode = INTERRUPTED_EXIT;
    ctx.io.stderr.write(`stopped following job ${id}; it goes on (jobline jobs cancel ${id} stops it)\n`);
    return;
  }
  // The stream ended without a final event (the job was deleted): ask the job itself.
  const job = outcome === null ? await client.jobs.get(id) : null;
  const state = outcome ?? job?.state ?? 'unknown';
  ctx.exitCode = OUTCOME_EXIT[state] ?? STILL_RUNNING_EXIT;
  if (!json) ctx.io.stderr.write(`${outcomeLine(ctx, id, state, failure ?? job?.error)}\n`);
}

function show(sink: EventSink, event: JobEvent): void {
  const data = event.data;
  switch (event.type) {
    case 'job.delta':
      return sink.output(typeof data['chunk'] === 'string' ? data['chunk'] : `${JSON.stringify(data['chunk'])}\n`);
    case 'job.progress':
      return sink.progress(data['progress']);
    case 'job.log':
      return sink.note(`log: ${String(data['message'])}`);
    case 'job.active':
      return sink.state(`attempt ${String(data['attempt'] ?? '?')} running`);
    case 'job.retrying':
      return sink.note(`attempt ${String(data['attempt'] ?? '?')} failed: ${errorText(data['error'])}; runs again at ${String(data['nextRunAt'] ?? 'once claimed')}`);
    case 'job.completed':
      return sink.state('completed');
    default:
      return undefined;
  }
}

function errorText(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'message' in error) {
    const code = 'code' in error && typeof error.code === 'string' ? ` (${error.code})` : '';
    return `${String(error.message)}${code}`;
  }
  return 'no reason given';
}

/** `jobs submit --wait`: long-polls until the job has finished, or `timeoutMs` has passed. */
export async function waitForJob(ctx: CliContext, client: JoblineClient, id: string, timeoutMs: number | undefined): Promise<Job> {
  if (ctx.io.stderr.isTTY === true && ctx.globals.json !== true) ctx.io.stderr.write(`waiting for job ${id}…\n`);
  return client.jobs.result(id, timeoutMs === undefined ? {} : { timeoutMs });
}

/** Sets the exit code for a waited-for job and says how it ended: the result on stdout, the rest on stderr. */
export function reportOutcome(ctx: CliContext, job: Job): void {
  ctx.exitCode = isFinished(job) ? (OUTCOME_EXIT[job.state] ?? 1) : STILL_RUNNING_EXIT;
  if (ctx.globals.json === true) return;
  if (job.state === 'completed' && job.result !== null && job.result !== undefined) {
    ctx.io.stdout.write(`${typeof job.result === 'string' ? job.result : JSON.stringify(job.result, null, 2)}\n`);
  }
  ctx.io.stderr.write(`${outcomeLine(ctx, job.id, job.state, job.error)}\n`);
}

function outcomeLine(ctx: CliContext, id: string, state: string, error: unknown): string {
  const color = ctx.output.color;
  switch (state) {
    case 'completed':
      return `job ${id} ${color.green('completed')}`;
    case 'failed':
      return `job ${id} ${color.red('failed')}${error ? `: ${errorText(error)}` : ''}`;
    case 'cancelled':
      return `job ${id} was ${color.yellow('cancelled')}`;
    default:
      return `job ${id} is still ${state}; wait longer with jobline jobs follow ${id}`;
  }
}
