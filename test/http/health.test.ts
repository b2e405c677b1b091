import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { problemOf, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

describe('health and metrics', () => {
  let server: TestRuntime;
  beforeAll(async () => {
    server = await startTestRuntime();
  });
  afterAll(async () => server.close());

  it('reports live and ready', async () => {
    const live = await server.request({ method: 'GET', url: '/health/live' });
    expect(live.json()).toEqual({ status: 'ok' });
    const ready = await server.request({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ok', checks: { database: 'ok' } });
  });

  it('exposes request durations and process metrics for Prometheus', async () => {
    await server.request({ method: 'GET', url: '/v1/me' });
    const response = await server.request({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/plain');
    expect(response.body).toMatch(/jobline_http_request_duration_seconds_count\{method="GET",route="\/v1\/me",status_code="401"\} 1/);
    expect(response.body).toContain('jobline_process_resident_memory_bytes');
    expect(response.body).toContain('jobline_nodejs_eventloop_lag_seconds');
  });

  it('answers 503 naming the database when it is gone', async () => {
    await server.runtime.database.close();
    const response = await server.request({ method: 'GET', url: '/health/ready' });
    expect(response.statusCode).toBe(503);
    const problem = problemOf(response) as unknown as { code: string; checks: Record<string, string> };
    expect(problem.code).toBe('JOBLINE_NOT_READY');
    expect(problem.checks.database).not.toBe('ok');
    expect((await server.request({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
  });
});

describe('a worker-role process', () => {
  let server: TestRuntime;
  beforeAll(async () => {
    server = await startTestRuntime({ env: { JOBLINE_ROLE: 'worker' } });
  });
  afterAll(async () => server.close());

  it('serves health and metrics but not the API', async () => {
    expect((await server.request({ method: 'GET', url: '/health/ready' })).statusCode).toBe(200);
    expect((await server.request({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
    const api = await server.request({ method: 'POST', url: '/v1/auth/login', body: { email: 'a@b.c', password: 'x' } });
    expect(api.statusCode).toBe(404);
  });
});
