import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { wantsEvent } from '../../src/webhooks/webhookRecords.js';
import type { GuardedResponse } from '../../src/utils/ssrfGuard.js';
import { newWebhookSecret, signatureHeader } from '../../src/utils/webhookSignature.js';
import {
  excerpt,
  jitter,
  MAX_RETRY_AFTER_MS,
  nextStep,
  reportFromFailure,
  reportFromResponse,
  type AttemptReport,
} from '../../src/webhooks/webhookOutcome.js';

const NOW = Date.parse('2026-03-01T00:00:00Z');

function response(status: number, headers: Record<string, string> = {}, body = ''): GuardedResponse {
  return { status, headers, body, truncated: false };
}

describe('outcome of an answer', () => {
  it.each([200, 201, 204, 299])('%i succeeds', (status) => {
    expect(reportFromResponse(response(status), NOW)).toMatchObject({ ok: true, statusCode: status, error: null });
  });

  it.each([301, 302, 303, 307, 308])('%i is a failure that names the redirect target', (status) => {
    const report = reportFromResponse(response(status, { location: 'http://10.0.0.1/admin' }), NOW);
    expect(report).toMatchObject({ ok: false, gone: false, statusCode: status, error: { code: 'JOBLINE_WEBHOOK_REDIRECT' } });
    expect(report.error?.message).toContain('http://10.0.0.1/admin');
  });

  it('410 means gone; other statuses are plain failures', () => {
    expect(reportFromResponse(response(410), NOW)).toMatchObject({ ok: false, gone: true });
    for (const status of [400, 401, 404, 500, 502]) {
      expect(reportFromResponse(response(status), NOW)).toMatchObject({ ok: false, gone: false, retryAfterMs: null, error: { code: 'JOBLINE_WEBHOOK_HTTP_STATUS' } });
    }
  });

  it('honours Retry-After on 429 and 503 only, in seconds or as a date, capped at 24 hours', () => {
    expect(reportFromResponse(response(429, { 'retry-after': '7' }), NOW).retryAfterMs).toBe(7000);
    expect(reportFromResponse(response(503, { 'retry-after': new Date(NOW + 90_000).toUTCString() }), NOW).retryAfterMs).toBe(90_000);
    expect(reportFromResponse(response(503, { 'retry-after': String(10 * 86_400) }), NOW).retryAfterMs).toBe(MAX_RETRY_AFTER_MS);
    expect(reportFromResponse(response(500, { 'retry-after': '7' }), NOW).retryAfterMs).toBeNull();
    expect(reportFromResponse(response(429, { 'retry-after': 'soon' }), NOW).retryAfterMs).toBeNull();
  });

  it('keeps at most 1 KiB of the body without splitting a character', () => {
    const body = 'é'.repeat(2000);
    const kept = reportFromResponse(response(500, {}, body), NOW).responseExcerpt ?? '';
    expect(Buffer.byteLength(kept)).toBe(1024);
    expect(body.startsWith(kept)).toBe(true);
    expect(excerpt('a€'.repeat(400))).toMatch(/^(a€)+a?$/);
    expect(Buffer.byteLength(excerpt('a€'.repeat(400)))).toBeLessThanOrEqual(1024);
  });

  it('keeps the code of a failure to get an answer', () => {
    const blocked = Object.assign(new Error('localhost resolves to a refused address: loopback.'), { code: 'JOBLINE_SSRF_BLOCKED' });
    expect(reportFromFailure(blocked)).toMatchObject({ ok: false, statusCode: null, error: { code: 'JOBLINE_SSRF_BLOCKED' } });
    expect(reportFromFailure(new Error('boom')).error?.code).toBe('JOBLINE_WEBHOOK_NETWORK');
  });
});

describe('retry schedule', () => {
  const failed: AttemptReport = { ok: false, statusCode: 500, error: null, gone: false, retryAfterMs: null, responseExcerpt: null };
  const delays = [1000, 5000];

  it('retries once per configured delay, then fails', () => {
    expect(nextStep(failed, 1, delays, () => 0.5)).toEqual({ status: 'pending', delayMs: 1000 });
    expect(nextStep(failed, 2, delays, () => 0.5)).toEqual({ status: 'pending', delayMs: 5000 });
    expect(nextStep(failed, 3, delays, () => 0.5)).toEqual({ status: 'failed' });
    expect(nextStep({ ...failed, ok: true }, 3, delays)).toEqual({ status: 'succeeded' });
    expect(nextStep({ ...failed, gone: true }, 1, delays)).toEqual({ status: 'failed' });
  });

  it('spreads each delay by ±10%', () => {
    expect(jitter(1000, () => 0)).toBe(900);
    expect(jitter(1000, () => 0.999_999)).toBe(1100);
    for (let i = 0; i < 200; i += 1) {
      const delay = jitter(5000);
      expect(delay).toBeGreaterThanOrEqual(4500);
      expect(delay).toBeLessThanOrEqual(5500);
    }
  });

  it('waits at least as long as Retry-After asks', () => {
    expect(nextStep({ ...failed, retryAfterMs: 60_000 }, 1, delays, () => 0.5)).toEqual({ status: 'pending', delayMs: 60_000 });
    expect(nextStep({ ...failed, retryAfterMs: 10 }, 1, delays, () => 0.5)).toEqual({ status: 'pending', delayMs: 1000 });
  });
});

describe('event filter', () => {
  it('takes every event for *, except the high-volume ones unless named', () => {
    expect(wantsEvent(['*'], 'job.completed')).toBe(true);
    expect(wantsEvent(['*'], 'job.delta')).toBe(false);
    expect(wantsEvent(['*'], 'job.progress')).toBe(false);
    expect(wantsEvent(['*'], 'job.log')).toBe(false);
    expect(wantsEvent(['*', 'job.progress'], 'job.progress')).toBe(true);
    expect(wantsEvent(['job.failed'], 'job.completed')).toBe(false);
  });
});

describe('signatures', () => {
  const body = JSON.stringify({ type: 'job.completed', timestamp: '2026-03-01T00:00:00.000Z', data: {} });

  it('verifies with the standardwebhooks package, and rejects a tampered body, a stale timestamp and a wrong secret', () => {
    const secret = newWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const now = new Date();
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(now.getTime() / 1000)), 'webhook-signature': signatureHeader([secret], 'msg_1', now, body) };
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(secret).verify(body.replace('completed', 'failed'), headers)).toThrow(WebhookVerificationError);
    expect(() => new Webhook(newWebhookSecret()).verify(body, headers)).toThrow(WebhookVerificationError);
    const stale = new Date(now.getTime() - 10 * 60_000);
    const staleHeaders = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(stale.getTime() / 1000)), 'webhook-signature': signatureHeader([secret], 'msg_1', stale, body) };
    expect(() => new Webhook(secret).verify(body, staleHeaders)).toThrow(/too old/);
  });

  it('signs with every secret during a rotation', () => {
    const [oldSecret, newSecret] = [newWebhookSecret(), newWebhookSecret()];
    const now = new Date();
    const header = signatureHeader([newSecret, oldSecret], 'msg_2', now, body);
    expect(header.split(' ')).toHaveLength(2);
    const headers = { 'webhook-id': 'msg_2', 'webhook-timestamp': String(Math.floor(now.getTime() / 1000)), 'webhook-signature': header };
    expect(() => new Webhook(oldSecret).verify(body, headers)).not.toThrow();
    expect(() => new Webhook(newSecret).verify(body, headers)).not.toThrow();
  });
});
