/**
 * The built-in `http` job type: call a URL through the SSRF guard and map the answer onto what
 * happens to the job next (API.md "Handlers"). 2xx completes; 408, 429 and 5xx are retried (at the
 * `Retry-After` time when 429/503 gives one); every other status fails at once, 3xx included,
 * since redirects are never followed.
 */
import { parseRetryAfter } from '../utils/retryAfter.js';
import http from 'node:http';
import { z } from 'zod';
import { NonRetriableError, RetryAfterError } from '../engine/errors.js';
import { AppError, toError } from '../utils/errors.js';
import { guardedFetch, type GuardedResponse, type OutboundPolicy } from '../utils/ssrfGuard.js';
import type { HandlerContext, JobHandler } from './types.js';

export const HTTP_JOB_DEFAULT_TIMEOUT_MS = 30_000;
export const HTTP_JOB_MAX_TIMEOUT_MS = 5 * 60_000;
export const HTTP_JOB_DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** Header names and values Node would reject at send time are rejected here, as a payload error. */
const headersSchema = z.record(z.string(), z.string()).superRefine((headers, ctx) => {
  for (const [name, value] of Object.entries(headers)) {
    try {
      http.validateHeaderName(name);
      http.validateHeaderValue(name, value);
    } catch {
      ctx.addIssue({ code: 'custom', message: `invalid header '${name}'`, path: [name] });
    }
  }
});

export const httpJobPayloadSchema = z.strictObject({
  url: z.url({ error: 'must be an absolute URL' }),
  method: z
    .string()
    .transform((method) => method.toUpperCase())
    .pipe(z.enum(METHODS, { error: `must be one of ${METHODS.join(', ')}` }))
    .default('GET'),
  headers: headersSchema.optional(),
  /** A string is sent as is; any other JSON value is sent as JSON. */
  body: z.unknown().optional(),
  timeout: z.number().int().positive().max(HTTP_JOB_MAX_TIMEOUT_MS).optional(),
});

export type HttpJobPayload = z.input<typeof httpJobPayloadSchema>;
type ParsedPayload = z.output<typeof httpJobPayloadSchema>;

export interface HttpJobResult {
  status: number;
  headers: Record<string, string>;
  /** Parsed JSON when the response says it is JSON (and was not cut short), else text. */
  body: unknown;
  /** The body was longer than the cap and was cut. */
  truncated: boolean;
}

export interface HttpJobHandlerOptions {
  policy: OutboundPolicy;
  /** Response bytes kept in the result. Default 1 MiB. */
  maxResponseBytes?: number;
  /** Clock for HTTP-date `Retry-After` values; tests fix it. */
  now?: () => number;
}

function parsePayload(raw: unknown): ParsedPayload {
  const parsed = httpJobPayloadSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || 'payload'}: ${issue.message}`);
  throw new NonRetriableError(`Invalid http job payload: ${problems.join('; ')}`, 'JOBLINE_VALIDATION_FAILED');
}

function requestBody(payload: ParsedPayload): { headers: Record<string, string>; body?: string } {
  const headers = { ...payload.headers };
  if (payload.body === undefined) return { headers };
  if (typeof payload.body === 'string') return { headers, body: payload.body };
  if (!Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')) {
    headers['content-type'] = 'application/json';
  }
  return { headers, body: JSON.stringify(payload.body) };
}

function decodeBody(response: GuardedResponse): unknown {
  const type = response.headers['content-type'] ?? '';
  if (response.truncated || !/^application\/(?:[\w.-]+\+)?json\b/i.test(type)) return response.body;
  try {
    return JSON.parse(response.body) as unknown;
  } catch {
    return response.body;
  }
}

function describeFailure(method: string, target: URL, response: GuardedResponse): string {
  const where = `${method} ${target.origin}${target.pathname}`;
  if (response.status >= 300 && response.status < 400) {
    const location = response.headers.location ?? 'nowhere';
    return `${where} answered ${response.status}, a redirect to ${location}; redirects are not followed.`;
  }
  const excerpt = response.body.slice(0, 200).trim();
  return `${where} answered ${response.status}${excerpt === '' ? '.' : `: ${excerpt}`}`;
}

function outcome(method: string, target: URL, response: GuardedResponse, now: number): HttpJobResult {
  const { status } = response;
  if (status >= 200 && status < 300) {
    return { status, headers: response.headers, body: decodeBody(response), truncated: response.truncated };
  }
  const message = describeFailure(method, target, response);
  if (status === 408 || status === 429 || status >= 500) {
    const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(response.headers['retry-after'], now) : null;
    throw retryAfterMs === null ? new Error(message) : new RetryAfterError(message, retryAfterMs);
  }
  throw new NonRetriableError(message);
}

/** A refusal by the policy cannot succeed on retry; network trouble and timeouts might. */
function translateFailure(thrown: unknown): Error {
  if (thrown instanceof AppError) return new NonRetriableError(thrown.message, thrown.code);
  return toError(thrown);
}

export function createHttpJobHandler(options: HttpJobHandlerOptions): JobHandler<unknown, HttpJobResult> {
  const maxResponseBytes = options.maxResponseBytes ?? HTTP_JOB_DEFAULT_MAX_RESPONSE_BYTES;
  const now = options.now ?? Date.now;
  return {
    type: 'http',
    async run(ctx: HandlerContext): Promise<HttpJobResult> {
      const payload = parsePayload(ctx.payload);
      let target: URL;
      let response: GuardedResponse;
      try {
        target = options.policy.assertUrlAllowed(payload.url);
        response = await guardedFetch(options.policy, target, {
          method: payload.method,
          ...requestBody(payload),
          signal: ctx.signal,
          timeoutMs: payload.timeout ?? HTTP_JOB_DEFAULT_TIMEOUT_MS,
          maxResponseBytes,
        });
      } catch (thrown) {
        throw translateFailure(thrown);
      }
      return outcome(payload.method, target, response, now());
    },
  };
}
