/**
 * Pure rules for webhook deliveries: what an answer (or a failure to get one) means, and when
 * the next attempt is due. No I/O, so the schedule and the outcome table are unit-tested alone.
 */
import { errorCode } from '../utils/errors.js';
import type { GuardedResponse } from '../utils/ssrfGuard.js';
import { parseRetryAfter } from '../utils/retryAfter.js';

export const RESPONSE_EXCERPT_BYTES = 1024;
/** A `Retry-After` further away than this is cut to it: a receiver cannot park a delivery for weeks. */
export const MAX_RETRY_AFTER_MS = 24 * 3_600_000;
/** Each retry delay varies randomly by up to this fraction, down or up, so retries of many deliveries spread out. */
export const RETRY_JITTER = 0.1;

export interface DeliveryError {
  code: string;
  message: string;
}

/** What one attempt came to. */
export interface AttemptReport {
  ok: boolean;
  statusCode: number | null;
  error: DeliveryError | null;
  /** 410 Gone: the receiver says the endpoint no longer exists. */
  gone: boolean;
  /** A 429 or 503 asked for this much patience (ms), already capped. */
  retryAfterMs: number | null;
  responseExcerpt: string | null;
}

export type NextStep = { status: 'succeeded' } | { status: 'failed' } | { status: 'pending'; delayMs: number };

/** Cuts text to at most `maxBytes` of UTF-8 without splitting a character. */
export function excerpt(text: string, maxBytes = RESPONSE_EXCERPT_BYTES): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let cut = text.slice(0, maxBytes);
  while (Buffer.byteLength(cut) > maxBytes) cut = cut.slice(0, -1);
  return cut;
}

/** Maps an HTTP answer onto the outcome rules: only 2xx succeeds; a redirect is a failure and is not followed. */
export function reportFromResponse(response: GuardedResponse, now: number): AttemptReport {
  const { status } = response;
  const base = { statusCode: status, responseExcerpt: excerpt(response.body), gone: false, retryAfterMs: null };
  if (status >= 200 && status < 300) return { ...base, ok: true, error: null };
  if (status >= 300 && status < 400) {
    const location = response.headers['location'] ?? 'nowhere';
    const message = `The endpoint answered ${status}, a redirect to ${location}; redirects are not followed.`;
    return { ...base, ok: false, error: { code: 'JOBLINE_WEBHOOK_REDIRECT', message } };
  }
  const error = { code: 'JOBLINE_WEBHOOK_HTTP_STATUS', message: `The endpoint answered ${status}.` };
  if (status === 410) return { ...base, ok: false, error, gone: true };
  const asked = status === 429 || status === 503 ? parseRetryAfter(response.headers['retry-after'], now) : null;
  return { ...base, ok: false, error, retryAfterMs: asked === null ? null : Math.min(asked, MAX_RETRY_AFTER_MS) };
}

/** An attempt that got no answer: refused by the SSRF guard, timed out, or a network error. */
export function reportFromFailure(thrown: unknown): AttemptReport {
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  const error = { code: errorCode(thrown) ?? 'JOBLINE_WEBHOOK_NETWORK', message };
  return { ok: false, statusCode: null, error, gone: false, retryAfterMs: null, responseExcerpt: null };
}

export function jitter(delayMs: number, random: () => number = Math.random): number {
  return Math.round(delayMs * (1 + (random() * 2 - 1) * RETRY_JITTER));
}

/**
 * What follows an attempt. `seriesAttempts` counts this attempt; `retryDelays` has one entry per
 * retry, so a series makes `retryDelays.length + 1` attempts at most.
 */
export function nextStep(report: AttemptReport, seriesAttempts: number, retryDelays: readonly number[], random: () => number = Math.random): NextStep {
  if (report.ok) return { status: 'succeeded' };
  if (report.gone) return { status: 'failed' };
  const delay = retryDelays[seriesAttempts - 1];
  if (delay === undefined) return { status: 'failed' };
  return { status: 'pending', delayMs: Math.max(jitter(delay, random), report.retryAfterMs ?? 0) };
}
