/**
 * Every failure the CLI reports becomes one line: what is wrong, then what to do. A stack trace
 * only with --debug.
 */

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    /** What the user can do about it. */
    readonly hint?: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** The fields of the client's JoblineError the CLI reads (kept structural so this file needs no client import). */
interface ApiFailure {
  code: string;
  status: number;
  /** The problem's detail; `message` also carries the code. */
  detail: string;
  requestId?: string | undefined;
}

function isApiFailure(error: unknown): error is Error & ApiFailure {
  return (
    error instanceof Error &&
    error.name === 'JoblineError' &&
    'code' in error &&
    typeof error.code === 'string' &&
    'status' in error &&
    typeof error.status === 'number' &&
    'detail' in error &&
    typeof error.detail === 'string'
  );
}

export interface ErrorContext {
  /** The server the command talked to, named when it cannot be reached. */
  url: string | null;
}

/** The one line to print for a failure (without the `jobline: ` prefix). */
export function describeError(error: unknown, context: ErrorContext): string {
  if (error instanceof CliError) return withHint(error.message, error.hint);
  if (isApiFailure(error)) return describeApiFailure(error, context);
  const message = error instanceof Error ? error.message : String(error);
  return withHint(`unexpected error: ${firstLine(message)}`, 'run again with --debug to see where it happened');
}

function describeApiFailure(error: Error & ApiFailure, context: ErrorContext): string {
  const code = `(${error.code})`;
  if (error.code === 'JOBLINE_UNREACHABLE' || error.status === 0) {
    return withHint(`cannot reach ${context.url ?? 'the server'} (${unreachableReason(error)})`, 'is the server running? set --url or JOBLINE_URL');
  }
  if (error.status === 401) return withHint(`not logged in or the key is invalid ${code}`, 'run jobline login');
  if (error.status === 403) {
    return withHint(`not allowed: ${trimPeriod(error.detail)} ${code}`, 'use a key with the needed scope, or an admin login');
  }
  if (error.status === 404) return withHint(`${trimPeriod(error.detail)} ${code}`, 'check the name or ID (jobline jobs list shows jobs)');
  if (error.status === 429) return withHint(`the server is rate limiting ${code}`, 'wait a moment and try again');
  if (error.status >= 500) {
    const request = error.requestId ? `, request ${error.requestId}` : '';
    return withHint(`the server failed ${code}${request}`, 'try again; the server log has the details');
  }
  return `${trimPeriod(error.detail)} ${code}`;
}

/** Why a connection failed, from the network error the client wraps (ECONNREFUSED → "connection refused"). */
function unreachableReason(error: Error): string {
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host not found',
    ECONNRESET: 'connection reset',
    ETIMEDOUT: 'timed out',
    UND_ERR_CONNECT_TIMEOUT: 'timed out',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    CERT_HAS_EXPIRED: 'TLS certificate expired',
    DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed TLS certificate',
  };
  let innermost = '';
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    innermost = cause.message;
    const code = 'code' in cause && typeof cause.code === 'string' ? cause.code : null;
    if (code && code in reasons) return reasons[code] ?? code;
    if (cause instanceof AggregateError) {
      for (const inner of cause.errors) {
        const innerCode = inner instanceof Error && 'code' in inner && typeof inner.code === 'string' ? inner.code : null;
        if (innerCode && innerCode in reasons) return reasons[innerCode] ?? innerCode;
      }
    }
  }
  // fetch refuses some ports outright ("bad port"); say what it said.
  return error.cause instanceof Error && innermost ? firstLine(innermost) : 'no answer';
}

function withHint(message: string, hint: string | undefined): string {
  return hint ? `${message}; ${hint}` : message;
}

function trimPeriod(message: string): string {
  return firstLine(message).replace(/\.$/, '');
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

export function stackOf(error: unknown): string {
  if (error instanceof Error && error.stack) {
    const causes: string[] = [error.stack];
    for (let cause = error.cause; cause instanceof Error; cause = cause.cause) causes.push(`caused by: ${cause.stack ?? cause.message}`);
    return causes.join('\n');
  }
  return String(error);
}
