import { isNonRetriable, retryAfterMsOf } from '../engine/errors.js';
import { timeoutError } from '../engine/lifecycle.js';
import type { AttemptFailure, Claim, Engine, HandlerEvent, Outcome } from '../engine/types.js';
import { errorCode, toError } from '../utils/errors.js';
import type { RegisteredHandler } from './registry.js';
import type { HandlerContext, HandlerJob } from './types.js';

/**
 * One attempt of one job: builds the handler's context, enforces the timeout, buffers the
 * events it emits, and reports the outcome to the engine under the claim's lease token.
 */

/** Why a worker stopped an attempt itself; the engine already knows, so nothing is reported. */
export type StopReason = 'cancelled' | 'lease_lost' | 'shutdown';

export interface RunningAttempt {
  claim: Claim;
  controller: AbortController;
  stopReason: StopReason | null;
  /** Settles when the attempt has been reported (or abandoned). */
  done: Promise<AttemptOutcome>;
  /** Settles when the handler itself returns or throws: a handler that ignores its signal may outlive `done`. */
  handlerSettled: Promise<void>;
}

export type AttemptOutcome = 'completed' | 'failed' | 'retried' | 'discarded' | 'stopped';

const EVENT_FLUSH_MS = 10;
const EVENT_FLUSH_COUNT = 256;

/** Buffers a running handler's events so thousands a second become a few writes. */
class EventBuffer {
  private buffered: HandlerEvent[] = [];
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly engine: Engine,
    private readonly claim: { jobId: string; token: string },
  ) {}

  push(event: HandlerEvent): void {
    this.buffered.push(event);
    if (this.buffered.length >= EVENT_FLUSH_COUNT) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), EVENT_FLUSH_MS);
  }

  /** Writes what is buffered, after any earlier write; resolves when all of it is stored. */
  flush(): Promise<unknown> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.buffered.length > 0) {
      const batch = this.buffered;
      this.buffered = [];
      this.chain = this.chain.then(() => this.engine.appendEvents(this.claim, batch)).catch(() => false);
    }
    return this.chain;
  }
}

class AttemptTimeout extends Error {}

export interface AttemptOptions {
  /** Told of each failed try to report the outcome (the store unreachable); the report is tried again. */
  onReportError?(error: Error): void;
}

export function startAttempt(engine: Engine, claim: Claim, handler: RegisteredHandler, options: AttemptOptions = {}): RunningAttempt {
  const controller = new AbortController();
  const attempt: RunningAttempt = { claim, controller, stopReason: null, done: Promise.resolve('stopped'), handlerSettled: Promise.resolve() };
  attempt.done = runAttempt(engine, attempt, handler, options);
  return attempt;
}

async function runAttempt(engine: Engine, attempt: RunningAttempt, handler: RegisteredHandler, options: AttemptOptions): Promise<AttemptOutcome> {
  const { claim, controller } = attempt;
  const lease = { jobId: claim.job.id, token: claim.token };
  const events = new EventBuffer(engine, lease);
  const ctx = handlerContext(claim, controller.signal, events);
  let timer: NodeJS.Timeout | undefined;
  const stopped = new Promise<never>((_resolve, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    if (claim.job.timeoutMs !== null) {
      timer = setTimeout(() => controller.abort(new AttemptTimeout()), claim.job.timeoutMs);
    }
  });
  stopped.catch(() => undefined);
  const handling = Promise.resolve().then(() => handler.run(ctx));
  attempt.handlerSettled = handling.then(
    () => undefined,
    () => undefined,
  );
  let result: unknown;
  let failure: AttemptFailure | null = null;
  try {
    result = jsonValue(await Promise.race([handling, stopped]));
  } catch (thrown) {
    failure = thrown instanceof AttemptTimeout ? timeoutFailure(claim.job.timeoutMs ?? 0) : classifyFailure(thrown);
  } finally {
    if (timer) clearTimeout(timer);
  }
  await events.flush();
  if (attempt.stopReason) return 'stopped';
  // Reporting is apart from the handler: a store that cannot take the outcome now is not the handler failing.
  if (failure === null) {
    const outcome = await report(attempt, () => engine.completeJob(lease, result), options);
    if (outcome === null) return 'stopped';
    return outcome.accepted ? 'completed' : 'discarded';
  }
  const reported = failure;
  const outcome = await report(attempt, () => engine.failJob(lease, reported), options);
  if (outcome === null) return 'stopped';
  if (!outcome.accepted) return 'discarded';
  return outcome.job.state === 'failed' ? 'failed' : 'retried';
}

const REPORT_RETRY_MS = 100;
const REPORT_RETRY_MAX_MS = 2000;

/**
 * Reports an outcome, trying again (100 ms, doubling to 2 s apart) while the store refuses, for
 * as long as the attempt holds its job: the pool keeps renewing the lease meanwhile, and a lease
 * lost or a shutdown ends the tries (null). Outcomes are fenced by the lease token, so a try
 * that did commit before its answer was lost is simply refused the second time.
 */
async function report(attempt: RunningAttempt, call: () => Promise<Outcome>, options: AttemptOptions): Promise<Outcome | null> {
  for (let delay = REPORT_RETRY_MS; ; delay = Math.min(2 * delay, REPORT_RETRY_MAX_MS)) {
    try {
      return await call();
    } catch (error) {
      options.onReportError?.(toError(error));
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    if (attempt.stopReason) return null;
  }
}

function handlerContext(claim: Claim, signal: AbortSignal, events: EventBuffer): HandlerContext {
  const { job } = claim;
  const view: HandlerJob = {
    id: job.id,
    type: job.type,
    queue: job.queue,
    payload: job.payload,
    attemptsMade: job.attemptsMade,
    maxAttempts: job.maxAttempts,
    tags: job.tags,
    ownerId: job.ownerId,
    createdAt: new Date(job.createdAt).toISOString(),
  };
  return {
    job: view,
    payload: job.payload,
    attempt: claim.attempt,
    signal,
    progress: (value) => events.push({ type: 'job.progress', data: { progress: jsonValue(value) } }),
    delta: (chunk) => events.push({ type: 'job.delta', data: { chunk: jsonValue(chunk) } }),
    log: (message) => events.push({ type: 'job.log', data: { message: String(message) } }),
  };
}

function timeoutFailure(timeoutMs: number): AttemptFailure {
  return { error: timeoutError(timeoutMs), nonRetriable: false, retryAfterMs: null };
}

/** What a thrown value means for the job: NonRetriableError fails it, RetryAfterError sets the delay. */
export function classifyFailure(thrown: unknown): AttemptFailure {
  const error = toError(thrown);
  const code = errorCode(thrown);
  return {
    error: { message: error.message || error.name, ...(code ? { code } : {}) },
    nonRetriable: isNonRetriable(thrown),
    retryAfterMs: retryAfterMsOf(thrown),
  };
}

/** A value as it will be stored: JSON, so a result that cannot round-trip is caught here. */
function jsonValue(value: unknown): unknown {
  if (value === undefined) return null;
  const text = JSON.stringify(value);
  return text === undefined ? null : (JSON.parse(text) as unknown);
}
