import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NonRetriableError, RetryAfterError, isNonRetriable, retryAfterMsOf } from '../../src/engine/errors.js';
import { createOutboundPolicy } from '../../src/utils/ssrfGuard.js';
import { createHttpJobHandler } from '../../src/workers/httpJob.js';
import { parseRetryAfter } from '../../src/utils/retryAfter.js';
import type { HandlerContext } from '../../src/workers/types.js';
import { startLoopbackServer, type LoopbackServer } from '../helpers/loopbackServer.js';

/** No real DNS: names used here resolve only through this table. */
async function fakeResolve(hostname: string): Promise<string[]> {
  if (hostname === 'internal.test') return ['10.0.0.5'];
  throw Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
}

const FIXED_NOW = Date.parse('Wed, 21 Oct 2025 07:28:00 GMT');
const handler = createHttpJobHandler({
  policy: createOutboundPolicy({ allow: ['127.0.0.0/8'], resolve: fakeResolve }),
  maxResponseBytes: 1000,
  now: () => FIXED_NOW,
});
const guardedHandler = createHttpJobHandler({ policy: createOutboundPolicy({ allow: [], resolve: fakeResolve }) });

function contextFor(payload: unknown, signal: AbortSignal = new AbortController().signal): HandlerContext {
  return {
    job: {
      id: '0195f0c0-0000-7000-8000-000000000001',
      type: 'http',
      queue: 'default',
      payload,
      attemptsMade: 0,
      maxAttempts: 3,
      tags: [],
      ownerId: 'user-1',
      createdAt: new Date(FIXED_NOW).toISOString(),
    },
    payload,
    attempt: 1,
    signal,
    progress() {},
    delta() {},
    log() {},
  };
}

async function failureOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof Error) return error;
    throw new Error(`threw a non-Error: ${String(error)}`);
  }
  throw new Error('expected the job to fail');
}

describe('http job type', () => {
  let server: LoopbackServer;

  beforeAll(async () => {
    server = await startLoopbackServer((request, response) => {
      const reply = (status: number, headers: http.OutgoingHttpHeaders, body = '') => response.writeHead(status, headers).end(body);
      switch (request.path) {
        case '/json':
          return reply(200, { 'content-type': 'application/json; charset=utf-8' }, JSON.stringify({ hello: 'world' }));
        case '/text':
          return reply(200, { 'content-type': 'text/plain' }, 'plain answer');
        case '/echo':
          return reply(200, { 'content-type': 'application/json' }, JSON.stringify({ method: request.method, headers: request.headers, body: request.body }));
        case '/big':
          return reply(200, { 'content-type': 'application/json' }, JSON.stringify({ data: 'z'.repeat(5000) }));
        case '/fail':
          return reply(500, { 'content-type': 'text/plain' }, 'boom');
        case '/slow-down':
          return reply(408, {});
        case '/busy':
          return reply(429, { 'retry-after': '2' });
        case '/busy-until':
          return reply(503, { 'retry-after': 'Wed, 21 Oct 2025 07:28:03 GMT' });
        case '/busy-unknown':
          return reply(429, {});
        case '/moved':
          return reply(302, { location: server.url('/json') });
        case '/hang':
          return; // never answers
        default:
          return reply(404, { 'content-type': 'text/plain' }, 'no such thing');
      }
    });
  });
  afterAll(async () => {
    await server.close();
  });

  it('completes with status, headers and the parsed JSON body on 2xx', async () => {
    const result = await handler.run(contextFor({ url: server.url('/json') }));
    expect(result).toMatchObject({ status: 200, body: { hello: 'world' }, truncated: false });
    expect(result.headers['content-type']).toBe('application/json; charset=utf-8');
    expect((await handler.run(contextFor({ url: server.url('/text') }))).body).toBe('plain answer');
  });

  it('sends the method, headers and body the payload asks for', async () => {
    const result = await handler.run(
      contextFor({ url: server.url('/echo'), method: 'post', headers: { 'x-trace': 't-1' }, body: { amount: 3 } }),
    );
    expect(result.body).toMatchObject({
      method: 'POST',
      body: '{"amount":3}',
      headers: { 'content-type': 'application/json', 'x-trace': 't-1' },
    });
    const raw = await handler.run(contextFor({ url: server.url('/echo'), method: 'PUT', body: 'as is' }));
    expect(raw.body).toMatchObject({ method: 'PUT', body: 'as is' });
  });

  it('caps the response it keeps and leaves a cut JSON body as text', async () => {
    const result = await handler.run(contextFor({ url: server.url('/big') }));
    expect(result.truncated).toBe(true);
    expect(typeof result.body).toBe('string');
    expect(result.body).toHaveLength(1000);
  });

  it.each([
    ['/fail', 500],
    ['/slow-down', 408],
    ['/busy-unknown', 429],
  ])('retries %s (%i) as an ordinary failure', async (path, status) => {
    const error = await failureOf(Promise.resolve(handler.run(contextFor({ url: server.url(path) }))));
    expect(isNonRetriable(error)).toBe(false);
    expect(retryAfterMsOf(error)).toBeNull();
    expect(error.message).toContain(String(status));
  });

  it('keeps the body excerpt in the failure message', async () => {
    const error = await failureOf(Promise.resolve(handler.run(contextFor({ url: server.url('/fail') }))));
    expect(error.message).toBe(`GET ${server.url('/fail')} answered 500: boom`);
  });

  it('honours Retry-After in seconds and as an HTTP date', async () => {
    const seconds = await failureOf(Promise.resolve(handler.run(contextFor({ url: server.url('/busy') }))));
    expect(seconds).toBeInstanceOf(RetryAfterError);
    expect(retryAfterMsOf(seconds)).toBe(2000);
    const date = await failureOf(Promise.resolve(handler.run(contextFor({ url: server.url('/busy-until') }))));
    expect(retryAfterMsOf(date)).toBe(3000);
  });

  it('fails at once on other 4xx', async () => {
    const error = await failureOf(Promise.resolve(handler.run(contextFor({ url: server.url('/nothing-here') }))));
    expect(error).toBeInstanceOf(NonRetriableError);
    expect(error.message).toContain('404');
  });

  it('fails at once on a redirect, without following it', async () => {
    const before = server.requests.length;
    const error = await failureOf(Promise.resolve(handler.run(contextFor({ url: server.url('/moved') }))));
    expect(error).toBeInstanceOf(NonRetriableError);
    expect(error.message).toContain('redirects are not followed');
    expect(server.requests.slice(before).map((request) => request.path)).toEqual(['/moved']);
  });

  it('stops the request when the job signal fires', async () => {
    const controller = new AbortController();
    const before = server.requests.length;
    const running = Promise.resolve(handler.run(contextFor({ url: server.url('/hang') }, controller.signal)));
    while (server.requests.length === before) await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort();
    const error = await failureOf(running);
    expect(error.name).toBe('AbortError');
    expect(isNonRetriable(error)).toBe(false);
  });

  it('times out after payload.timeout as a retriable failure', async () => {
    const started = Date.now();
    const error = await failureOf(Promise.resolve(handler.run(contextFor({ url: server.url('/hang'), timeout: 200 }))));
    expect(error).toMatchObject({ code: 'JOBLINE_OUTBOUND_TIMEOUT' });
    expect(isNonRetriable(error)).toBe(false);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('retries when nothing listens', async () => {
    const idle = http.createServer();
    await new Promise<void>((resolve) => idle.listen(0, '127.0.0.1', resolve));
    const { port } = idle.address() as AddressInfo;
    await new Promise<void>((resolve) => idle.close(() => resolve()));
    const error = await failureOf(Promise.resolve(handler.run(contextFor({ url: `http://127.0.0.1:${port}/` }))));
    expect(error).toMatchObject({ code: 'ECONNREFUSED' });
    expect(isNonRetriable(error)).toBe(false);
  });

  it.each([
    ['no payload', undefined],
    ['a string', 'http://127.0.0.1/'],
    ['no url', {}],
    ['a relative url', { url: '/path' }],
    ['an unknown method', { url: 'http://127.0.0.1/', method: 'TRACE' }],
    ['a zero timeout', { url: 'http://127.0.0.1/', timeout: 0 }],
    ['a timeout over 5 minutes', { url: 'http://127.0.0.1/', timeout: 300_001 }],
    ['a header name with a space', { url: 'http://127.0.0.1/', headers: { 'bad name': 'x' } }],
    ['a header value with a line break', { url: 'http://127.0.0.1/', headers: { 'x-a': 'one\r\nx-b: two' } }],
    ['a misspelt field', { url: 'http://127.0.0.1/', timout: 1000 }],
  ])('fails at once on an invalid payload: %s', async (_label, payload) => {
    const before = server.connections;
    const error = await failureOf(Promise.resolve(handler.run(contextFor(payload))));
    expect(error).toBeInstanceOf(NonRetriableError);
    expect(error).toMatchObject({ code: 'JOBLINE_VALIDATION_FAILED' });
    expect(error.message).toMatch(/^Invalid http job payload: /);
    expect(server.connections).toBe(before);
  });

  it.each([
    ['a loopback literal', () => server.url('/json')],
    ['a name resolving to a private address', () => 'http://internal.test/'],
    ['a file: URL', () => 'file:///etc/passwd'],
    ['a metadata address', () => 'http://169.254.169.254/latest/meta-data/'],
  ])('fails at once with JOBLINE_SSRF_BLOCKED for %s outside the allow-list', async (_label, url) => {
    const before = server.connections;
    const error = await failureOf(Promise.resolve(guardedHandler.run(contextFor({ url: url() }))));
    expect(error).toBeInstanceOf(NonRetriableError);
    expect(error).toMatchObject({ code: 'JOBLINE_SSRF_BLOCKED' });
    expect(server.connections).toBe(before);
  });
});

describe('Retry-After parsing', () => {
  it.each([
    ['120', 120_000],
    [' 0 ', 0],
    ['Wed, 21 Oct 2025 07:28:30 GMT', 30_000],
    ['Wed, 21 Oct 2025 07:27:00 GMT', 0],
    ['Wednesday, 21-Oct-25 07:28:10 GMT', 10_000],
  ])('reads %j as %i ms', (value, ms) => {
    expect(parseRetryAfter(value, FIXED_NOW)).toBe(ms);
  });

  it.each([undefined, '', 'soon', '-5', '1.5', 'Wed, not a date'])('ignores %j', (value) => {
    expect(parseRetryAfter(value, FIXED_NOW)).toBeNull();
  });
});
