/**
 * The handler contract (API.md "Handlers"): a module default-exports
 * `{ type, queue?, concurrency?, run(ctx) }`; what `run` returns is the job's result, what it
 * throws fails the attempt.
 */

export interface HandlerJob {
  id: string;
  type: string;
  queue: string;
  payload: unknown;
  attemptsMade: number;
  maxAttempts: number;
  tags: string[];
  ownerId: string;
  createdAt: string;
}

export interface HandlerContext<Payload = unknown> {
  job: HandlerJob;
  payload: Payload;
  /** 1 for the first attempt. */
  attempt: number;
  /** Fires when the job is cancelled, times out, or the worker shuts down past its grace period. */
  signal: AbortSignal;
  /** Reports progress (a number 0–100 or any JSON value); emits job.progress. */
  progress(value: unknown): void;
  /** Streams a chunk of output (text or JSON); emits job.delta. */
  delta(chunk: unknown): void;
  /** Writes a line to the job's log; emits job.log. */
  log(message: string): void;
}

export interface JobHandler<Payload = unknown, Result = unknown> {
  type: string;
  /** The queue jobs of this type go to unless the submission names one. Default `default`. */
  queue?: string;
  /** How many jobs of this type one process runs at once. */
  concurrency?: number;
  run(ctx: HandlerContext<Payload>): Promise<Result> | Result;
}
