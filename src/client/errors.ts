/**
 * The client's one error: every failed call throws a JoblineError carrying the problem's stable
 * `code` (see docs/errors.md), its HTTP status, and the server's request id for support.
 */

/** Codes a caller may branch on. A server newer than this client may send others. */
export type JoblineErrorCode =
  | 'JOBLINE_API_KEY_INVALID'
  | 'JOBLINE_API_KEY_NOT_FOUND'
  | 'JOBLINE_BAD_REQUEST'
  | 'JOBLINE_BAD_URL'
  | 'JOBLINE_DELIVERY_NOT_FOUND'
  | 'JOBLINE_EMAIL_TAKEN'
  | 'JOBLINE_FORBIDDEN'
  | 'JOBLINE_IDEMPOTENCY_CONFLICT'
  | 'JOBLINE_INSUFFICIENT_SCOPE'
  | 'JOBLINE_INTERNAL'
  | 'JOBLINE_INVALID_CREDENTIALS'
  | 'JOBLINE_INVALID_CURSOR'
  | 'JOBLINE_JOB_NOT_FOUND'
  | 'JOBLINE_JOB_PAYLOAD_TOO_LARGE'
  | 'JOBLINE_JOB_STATE_CONFLICT'
  | 'JOBLINE_LAST_ADMIN'
  | 'JOBLINE_MALFORMED_JSON'
  | 'JOBLINE_NOT_READY'
  | 'JOBLINE_PAYLOAD_TOO_LARGE'
  | 'JOBLINE_RATE_LIMITED'
  | 'JOBLINE_REFRESH_TOKEN_INVALID'
  | 'JOBLINE_REFRESH_TOKEN_REUSED'
  | 'JOBLINE_REGISTRATION_CLOSED'
  | 'JOBLINE_RESET_TOKEN_INVALID'
  | 'JOBLINE_ROUTE_NOT_FOUND'
  | 'JOBLINE_SCHEDULE_NOT_FOUND'
  | 'JOBLINE_SINGLETON_CONFLICT'
  | 'JOBLINE_SSRF_BLOCKED'
  | 'JOBLINE_TOKEN_EXPIRED'
  | 'JOBLINE_TOKEN_INVALID'
  | 'JOBLINE_UNAUTHENTICATED'
  | 'JOBLINE_UNKNOWN_JOB_TYPE'
  | 'JOBLINE_UNSUPPORTED_MEDIA_TYPE'
  | 'JOBLINE_URL_TOO_LONG'
  | 'JOBLINE_USER_NOT_FOUND'
  | 'JOBLINE_VALIDATION_FAILED'
  | 'JOBLINE_WEBHOOK_NOT_FOUND'
  /** Client side: the server could not be reached (status 0). */
  | 'JOBLINE_UNREACHABLE'
  /** Client side: the server answered with something that is not a problem document. */
  | 'JOBLINE_UNEXPECTED_RESPONSE';

/** RFC 9457 problem details as Jobline sends them. */
export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail: string;
  code: string;
  requestId?: string;
  errors?: { path: string; message: string }[];
  [extension: string]: unknown;
}

export class JoblineError extends Error {
  override readonly name = 'JoblineError';
  readonly code: JoblineErrorCode | (string & {});
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  readonly detail: string;
  readonly requestId: string | undefined;
  /** Field-level problems of a validation error. */
  readonly fieldErrors: readonly { path: string; message: string }[];
  readonly problem: Problem;

  constructor(problem: Problem, options: { cause?: unknown } = {}) {
    super(`${problem.detail} (${problem.code})`, options.cause === undefined ? undefined : { cause: options.cause });
    this.problem = problem;
    this.code = problem.code;
    this.status = problem.status;
    this.detail = problem.detail;
    this.requestId = problem.requestId;
    this.fieldErrors = problem.errors ?? [];
  }

  /** Whether `error` is a JoblineError, optionally with one of these codes. */
  static is(error: unknown, ...codes: JoblineErrorCode[]): error is JoblineError {
    return error instanceof JoblineError && (codes.length === 0 || codes.includes(error.code as JoblineErrorCode));
  }
}

export function unreachable(url: string, cause: unknown): JoblineError {
  const reason = describeNetworkError(cause);
  return new JoblineError({ status: 0, code: 'JOBLINE_UNREACHABLE', detail: `Cannot reach ${url}${reason ? ` (${reason})` : ''}.` }, { cause });
}

function describeNetworkError(cause: unknown): string {
  // Node's fetch wraps the socket error (ECONNREFUSED, ENOTFOUND …) in `cause`.
  const inner = cause instanceof Error && cause.cause instanceof Error ? cause.cause : cause;
  if (!(inner instanceof Error)) return '';
  const code = (inner as Error & { code?: unknown }).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND') return 'unknown host';
  if (code === 'ECONNRESET') return 'connection reset';
  return typeof code === 'string' ? code : inner.message;
}

/** The error a non-2xx answer stands for, read from its problem+json body when it has one. */
export async function errorFromResponse(response: Response): Promise<JoblineError> {
  const text = await response.text().catch(() => '');
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return errorFromBody(body, response, text);
}

/** The error for a non-2xx answer whose body was already read (and parsed when it was JSON). */
export function errorFromBody(body: unknown, response: Response, text = typeof body === 'string' ? body : ''): JoblineError {
  if (isProblem(body)) return new JoblineError({ ...body, status: response.status });
  return new JoblineError({
    status: response.status,
    code: 'JOBLINE_UNEXPECTED_RESPONSE',
    detail: `${response.status} ${response.statusText || 'error'} from ${response.url}${text ? `: ${text.slice(0, 200)}` : ''}`,
  });
}

function isProblem(body: unknown): body is Problem {
  return typeof body === 'object' && body !== null && typeof (body as Problem).code === 'string' && typeof (body as Problem).detail === 'string';
}
