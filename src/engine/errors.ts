/**
 * The errors a job handler throws to steer what happens next. Recognised by class and also by
 * `name`, so handlers that bundle their own copy (or are plain JavaScript) work the same.
 */

/** The attempt failed and retrying cannot help: the job fails at once. */
export class NonRetriableError extends Error {
  override readonly name = 'NonRetriableError';
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** The attempt failed; try again no sooner than `retryAfterMs` from now (attempts still count). */
export class RetryAfterError extends Error {
  override readonly name = 'RetryAfterError';
  constructor(
    message: string,
    readonly retryAfterMs: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

export function isNonRetriable(error: unknown): error is Error & { code?: string } {
  return error instanceof NonRetriableError || (error instanceof Error && error.name === 'NonRetriableError');
}

export function retryAfterMsOf(error: unknown): number | null {
  if (error instanceof RetryAfterError) return error.retryAfterMs;
  if (error instanceof Error && error.name === 'RetryAfterError') {
    const value = (error as { retryAfterMs?: unknown }).retryAfterMs;
    return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : null;
  }
  return null;
}
