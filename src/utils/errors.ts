/**
 * One error model for the whole server. Every failure a client can see is an AppError with a
 * stable `code`, an HTTP status and a message; the HTTP layer renders it as problem+json.
 */

export interface FieldError {
  path: string;
  message: string;
}

export interface AppErrorOptions {
  cause?: unknown;
  /** Field-level problems of a validation error. */
  errors?: FieldError[];
  /** Extra members rendered into the problem document (RFC 9457 extensions). */
  extensions?: Record<string, unknown>;
  /** Response headers the error needs, e.g. Retry-After. */
  headers?: Record<string, string>;
}

export class AppError extends Error {
  override readonly name = 'AppError';
  readonly errors: FieldError[] | undefined;
  readonly extensions: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    options: AppErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.errors = options.errors;
    this.extensions = options.extensions;
    this.headers = options.headers;
  }

  get title(): string {
    return STATUS_TITLES[this.status] ?? 'Error';
  }
}

const STATUS_TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  410: 'Gone',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function statusTitle(status: number): string {
  return STATUS_TITLES[status] ?? (status >= 500 ? 'Server Error' : 'Error');
}

/** The registry: each constructor names what happened; its code never changes once released. */
export const errors = {
  validation: (message: string, fieldErrors: FieldError[] = []) =>
    new AppError('JOBLINE_VALIDATION_FAILED', 400, message, { errors: fieldErrors }),
  malformedJson: (detail: string) => new AppError('JOBLINE_MALFORMED_JSON', 400, detail),
  badRequest: (message: string) => new AppError('JOBLINE_BAD_REQUEST', 400, message),
  payloadTooLarge: (limitBytes: number) =>
    new AppError('JOBLINE_PAYLOAD_TOO_LARGE', 413, `The request body exceeds the limit of ${limitBytes} bytes.`),
  unsupportedMediaType: (contentType: string) =>
    new AppError('JOBLINE_UNSUPPORTED_MEDIA_TYPE', 415, `Content-Type '${contentType}' is not supported; send application/json.`),
  routeNotFound: (method: string, url: string) =>
    new AppError('JOBLINE_ROUTE_NOT_FOUND', 404, `No route ${method} ${url}.`),
  tooManySubscriptions: (limit: number) =>
    new AppError('JOBLINE_TOO_MANY_SUBSCRIPTIONS', 429, `A connection may hold at most ${limit} subscriptions; unsubscribe from some first.`),
  rateLimited: (retryAfterSeconds: number, message = 'Too many requests; slow down.') =>
    new AppError('JOBLINE_RATE_LIMITED', 429, message, { headers: { 'retry-after': String(retryAfterSeconds) } }),

  unauthenticated: (message = 'Authentication is required: send Authorization: Bearer <token or API key>.') =>
    new AppError('JOBLINE_UNAUTHENTICATED', 401, message),
  invalidToken: (message = 'The access token is invalid.') => new AppError('JOBLINE_TOKEN_INVALID', 401, message),
  tokenExpired: () => new AppError('JOBLINE_TOKEN_EXPIRED', 401, 'The access token has expired; refresh it.'),
  invalidApiKey: (message = 'The API key is invalid, expired or revoked.') =>
    new AppError('JOBLINE_API_KEY_INVALID', 401, message),
  invalidCredentials: () => new AppError('JOBLINE_INVALID_CREDENTIALS', 401, 'Wrong email or password.'),
  refreshTokenInvalid: () =>
    new AppError('JOBLINE_REFRESH_TOKEN_INVALID', 401, 'The refresh token is invalid or expired; log in again.'),
  refreshTokenReused: () =>
    new AppError(
      'JOBLINE_REFRESH_TOKEN_REUSED',
      401,
      'This refresh token was already used; every token of this login has been revoked. Log in again.',
    ),
  resetTokenInvalid: () =>
    new AppError('JOBLINE_RESET_TOKEN_INVALID', 400, 'The password reset token is invalid, expired or already used.'),
  wrongPassword: () => new AppError('JOBLINE_WRONG_PASSWORD', 403, 'The current password is wrong.'),

  forbidden: (message = 'You are not allowed to do this.') => new AppError('JOBLINE_FORBIDDEN', 403, message),
  insufficientScope: (scope: string) =>
    new AppError('JOBLINE_INSUFFICIENT_SCOPE', 403, `This API key lacks the scope '${scope}'.`, {
      extensions: { requiredScope: scope },
    }),
  registrationClosed: () =>
    new AppError('JOBLINE_REGISTRATION_CLOSED', 403, 'Registration is closed; ask an administrator for an account.'),

  userNotFound: () => new AppError('JOBLINE_USER_NOT_FOUND', 404, 'No such user.'),
  apiKeyNotFound: () => new AppError('JOBLINE_API_KEY_NOT_FOUND', 404, 'No such API key.'),
  emailTaken: () => new AppError('JOBLINE_EMAIL_TAKEN', 409, 'A user with this email already exists.'),
  lastAdmin: () =>
    new AppError('JOBLINE_LAST_ADMIN', 409, 'This is the last administrator; create another admin first.'),
  invalidCursor: () => new AppError('JOBLINE_INVALID_CURSOR', 400, 'The cursor is malformed or from another listing.'),
  ssrfBlocked: (message: string) => new AppError('JOBLINE_SSRF_BLOCKED', 400, message),

  webhookNotFound: () => new AppError('JOBLINE_WEBHOOK_NOT_FOUND', 404, 'No such webhook endpoint.'),
  deliveryNotFound: () => new AppError('JOBLINE_DELIVERY_NOT_FOUND', 404, 'No such delivery of this webhook endpoint.'),
  webhookDisabled: (reason: string | null) =>
    new AppError(
      'JOBLINE_WEBHOOK_DISABLED',
      409,
      `The webhook endpoint is disabled${reason === null ? '' : ` (${reason})`}; enable it with PATCH {"enabled": true} first.`,
    ),

  jobNotFound: () => new AppError('JOBLINE_JOB_NOT_FOUND', 404, 'No such job.'),
  jobStateConflict: (message: string) => new AppError('JOBLINE_JOB_STATE_CONFLICT', 409, message),
  singletonTaken: (jobId: string) =>
    new AppError('JOBLINE_SINGLETON_CONFLICT', 409, 'A queued or active job with this singletonKey already exists.', {
      extensions: { jobId },
    }),
  unknownJobType: (type: string, known: readonly string[]) =>
    new AppError('JOBLINE_UNKNOWN_JOB_TYPE', 400, `No handler is registered for job type '${type}'.`, {
      extensions: { knownTypes: known },
    }),
  payloadTooLargeForJob: (limitBytes: number) =>
    new AppError('JOBLINE_JOB_PAYLOAD_TOO_LARGE', 413, `The job payload exceeds the limit of ${limitBytes} bytes.`),
  idempotencyConflict: () =>
    new AppError(
      'JOBLINE_IDEMPOTENCY_CONFLICT',
      409,
      'The Idempotency-Key header and the body\'s idempotencyKey differ; send one of them.',
    ),
  scheduleNotFound: () => new AppError('JOBLINE_SCHEDULE_NOT_FOUND', 404, 'No such schedule.'),
  notReady: (checks: Record<string, string>) =>
    new AppError('JOBLINE_NOT_READY', 503, 'A dependency of the server is not available.', { extensions: { checks } }),
  internal: (cause?: unknown) =>
    new AppError('JOBLINE_INTERNAL', 500, 'An internal error occurred.', { cause }),
} as const;

/** Turns anything thrown into an Error, so logging and storing never meet a bare string or object. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  if (typeof thrown === 'string') return new Error(thrown);
  try {
    return new Error(`Non-error thrown: ${JSON.stringify(thrown)}`);
  } catch {
    return new Error(`Non-error thrown: ${String(thrown)}`);
  }
}

/** Reads a string `code` from an error-like value without `any`. */
export function errorCode(thrown: unknown): string | undefined {
  if (typeof thrown === 'object' && thrown !== null && 'code' in thrown) {
    const code = (thrown as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
