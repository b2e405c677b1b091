import type { Credentials } from './credentials.js';
import { unreachable } from './errors.js';

/**
 * The fetch every request goes through: adds credentials, renews an expired login once, and
 * retries with exponential backoff what can safely be sent again — 429 and 503 (honouring
 * Retry-After) and, for requests that are idempotent or carry an Idempotency-Key, a lost
 * connection. A connection that cannot be made at all throws JOBLINE_UNREACHABLE.
 */

export interface RetryPolicy {
  /** Retries after the first try; 0 turns retrying off. */
  retries: number;
  /** First backoff (ms), doubled each retry, with ±50% jitter. */
  baseDelayMs: number;
  /** No single wait is longer, whatever Retry-After says. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 3, baseDelayMs: 250, maxDelayMs: 30_000 };

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
const AUTH_PATHS = /\/v1\/auth\/(login|refresh|logout|register|password\/)/;

export type Fetch = (request: Request) => Promise<Response>;

export function createTransport(options: { fetch: Fetch; credentials: Credentials; retry: RetryPolicy; userAgent?: string | undefined }): Fetch {
  const { credentials, retry } = options;
  return async function send(original: Request): Promise<Response> {
    const retriesConnection = IDEMPOTENT_METHODS.has(original.method) || original.headers.has('idempotency-key');
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const request = original.clone();
      if (!AUTH_PATHS.test(new URL(request.url).pathname) && !request.headers.has('authorization')) {
        const authorization = await credentials.authorization();
        if (authorization) request.headers.set('authorization', authorization);
      }
      if (options.userAgent && !request.headers.has('user-agent')) request.headers.set('user-agent', options.userAgent);
      let response: Response;
      try {
        response = await options.fetch(request);
      } catch (error) {
        if (original.signal.aborted) throw error;
        if (!retriesConnection || attempt >= retry.retries) throw unreachable(new URL(original.url).origin, error);
        await sleep(backoff(retry, attempt), original.signal);
        continue;
      }
      if (response.status === 401 && !refreshed && credentials.canRefresh && !original.headers.has('authorization')) {
        // The access token expired or was invalidated: one refresh, then the same request again.
        refreshed = true;
        await response.body?.cancel();
        await credentials.refresh();
        attempt--;
        continue;
      }
      if ((response.status === 429 || response.status === 503) && attempt < retry.retries) {
        const wait = retryAfterMs(response.headers.get('retry-after')) ?? backoff(retry, attempt);
        await response.body?.cancel();
        await sleep(Math.min(wait, retry.maxDelayMs), original.signal);
        continue;
      }
      return response;
    }
  };
}

function backoff(retry: RetryPolicy, attempt: number): number {
  const delay = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** attempt);
  return delay * (0.5 + Math.random());
}

/** Retry-After in seconds or as an HTTP date, in ms from now; null when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | null {
  if (value === null || value.trim() === '') return null;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
