import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { problemOf, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

describe('HTTP conventions', () => {
  let server: TestRuntime;

  beforeAll(async () => {
    server = await startTestRuntime({ env: { JOBLINE_BODY_LIMIT: '4096' } });
    // A route that fails the way a bug would, to see what a client is told.
    server.runtime.app.get('/test/boom', async () => {
      throw new Error('database password is hunter2');
    });
  });
  afterAll(async () => server.close());

  it('answers an unknown route with a 404 problem', async () => {
    const response = await server.request({ method: 'GET', url: '/v1/nothing-here?x=1' });
    expect(response.statusCode).toBe(404);
    const problem = problemOf(response);
    expect(problem).toMatchObject({ status: 404, code: 'JOBLINE_ROUTE_NOT_FOUND', title: 'Not Found', type: 'urn:jobline:problem:JOBLINE_ROUTE_NOT_FOUND' });
    expect(problem.detail).toBe('No route GET /v1/nothing-here.');
  });

  it('answers a non-JSON body with 415', async () => {
    const response = await server.request({
      method: 'POST',
      url: '/v1/auth/login',
      body: 'email=a&password=b',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(response.statusCode).toBe(415);
    expect(problemOf(response).code).toBe('JOBLINE_UNSUPPORTED_MEDIA_TYPE');
    const text = await server.request({ method: 'POST', url: '/v1/auth/login', body: 'hello', headers: { 'content-type': 'text/plain' } });
    expect(text.statusCode).toBe(415);
  });

  it('answers an empty JSON body and a JSON array with 400 problems', async () => {
    const empty = await server.request({ method: 'POST', url: '/v1/auth/login', body: '', headers: { 'content-type': 'application/json' } });
    expect(empty.statusCode).toBe(400);
    expect(problemOf(empty).code).toBe('JOBLINE_MALFORMED_JSON');
    const array = await server.request({ method: 'POST', url: '/v1/auth/login', body: [1, 2] });
    expect(array.statusCode).toBe(400);
    expect(problemOf(array).code).toBe('JOBLINE_VALIDATION_FAILED');
  });

  it('answers a body over the configured limit with 413', async () => {
    const response = await server.request({ method: 'POST', url: '/v1/auth/login', body: { email: 'a@b.c', password: 'x'.repeat(5000) } });
    expect(response.statusCode).toBe(413);
    expect(problemOf(response).detail).toContain('4096');
  });

  it('hides the details of a 500 from the client and logs them', async () => {
    const response = await server.request({ method: 'GET', url: '/test/boom' });
    expect(response.statusCode).toBe(500);
    const problem = problemOf(response);
    expect(problem.code).toBe('JOBLINE_INTERNAL');
    expect(response.body).not.toContain('hunter2');
    expect(server.logText()).toContain('hunter2');
  });

  it('puts a request id on every response and problem, reusing a sane incoming one', async () => {
    const fresh = await server.request({ method: 'GET', url: '/health/live' });
    expect(fresh.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const traced = await server.request({ method: 'GET', url: '/v1/none', headers: { 'x-request-id': 'trace-abc-123' } });
    expect(traced.headers['x-request-id']).toBe('trace-abc-123');
    expect(traced.json().requestId).toBe('trace-abc-123');
    expect(server.logs.some((line) => line['requestId'] === 'trace-abc-123')).toBe(true);
    const hostile = await server.request({ method: 'GET', url: '/health/live', headers: { 'x-request-id': 'a b\nc' } });
    expect(hostile.headers['x-request-id']).not.toBe('a b\nc');
  });

  it('sets security headers', async () => {
    const response = await server.request({ method: 'GET', url: '/health/live' });
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['strict-transport-security']).toBeDefined();
  });

  it('serves an OpenAPI 3.1 document generated from the route schemas, and the docs UI', async () => {
    const response = await server.request({ method: 'GET', url: '/docs/openapi.json' });
    expect(response.statusCode).toBe(200);
    const document = response.json();
    expect(document.openapi).toBe('3.1.0');
    expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/v1/auth/login', '/v1/me', '/v1/users/{id}', '/v1/api-keys']));
    const loginBody = document.paths['/v1/auth/login'].post.requestBody.content['application/json'].schema;
    expect(loginBody.required).toEqual(['email', 'password']);
    const ui = await server.request({ method: 'GET', url: '/docs/' });
    expect(ui.statusCode).toBe(200);
    expect(ui.headers['content-type']).toContain('text/html');
  });
});

describe('global rate limit', () => {
  let server: TestRuntime;
  beforeAll(async () => {
    server = await startTestRuntime({ env: { JOBLINE_RATE_LIMIT: '3' } });
  });
  afterAll(async () => server.close());

  it('answers 429 problem+json with Retry-After past the budget, sparing health checks', async () => {
    for (let i = 0; i < 3; i += 1) expect((await server.request({ method: 'GET', url: '/v1/me' })).statusCode).toBe(401);
    const limited = await server.request({ method: 'GET', url: '/v1/me' });
    expect(limited.statusCode).toBe(429);
    expect(problemOf(limited).code).toBe('JOBLINE_RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    // Another client has its own budget.
    expect((await server.request({ method: 'GET', url: '/v1/me', remoteAddress: '10.0.0.7' })).statusCode).toBe(401);
    for (let i = 0; i < 5; i += 1) expect((await server.request({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
  });
});
