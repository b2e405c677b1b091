import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io as connect, type Socket } from 'socket.io-client';
import { Client, probe, registerProbeHandlers } from '../conformance/harness.js';
import { startLoopbackServer } from '../helpers/loopbackServer.js';
import { createTestDatabase, postgresReachable } from '../helpers/postgres.js';
import { deleteKeys, distributedEnv, redisReachable, testPrefix } from '../helpers/redis.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const available = (await postgresReachable()) && (await redisReachable());

/**
 * Two servers of one distributed deployment in this process: an `api` and a `worker`, sharing a
 * PostgreSQL database and a Redis prefix. What one does, the other must see.
 */
describe.skipIf(!available)('distributed mode: processes share work, events and limits', () => {
  let database: { url: string; drop: () => Promise<void> };
  const prefix = testPrefix();
  let api: TestRuntime;
  let worker: TestRuntime;
  let baseUrl: string;
  let client: Client;

  const start = (role: string) =>
    startTestRuntime({
      postgresUrl: database.url,
      env: {
        JOBLINE_ROLE: role,
        ...distributedEnv(prefix),
        JOBLINE_SWEEP_INTERVAL: '100',
        JOBLINE_OUTBOUND_ALLOW: '127.0.0.1/32',
      },
      handlers: registerProbeHandlers,
    });

  beforeAll(async () => {
    database = await createTestDatabase();
    api = await start('api');
    worker = await start('worker');
    baseUrl = await api.runtime.app.listen({ port: 0, host: '127.0.0.1' });
    client = new Client(api, (await api.login()).accessToken);
  });

  afterAll(async () => {
    await api?.close();
    await worker?.close();
    await database?.drop();
    await deleteKeys(prefix);
  });

  it('runs a job submitted to the api process in the worker process', async () => {
    expect(api.runtime.workers).toBeNull();
    expect(worker.runtime.workers).not.toBeNull();
    const job = await client.submit({ type: 'echo', payload: { hello: 'there' } });
    expect(await client.waitFor(job.id)).toMatchObject({ state: 'completed', result: { echoed: { hello: 'there' } } });
    expect(probe.starts.get(job.id)).toHaveLength(1);
  });

  it('serves only health and metrics on a worker', async () => {
    expect((await worker.request({ method: 'GET', url: '/v1/jobs', token: client.token })).statusCode).toBe(404);
    const ready = await worker.request({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ checks: { database: 'ok', redis: 'ok' } });
    expect((await worker.request({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
  });

  it('streams over Socket.IO on the api process what the worker process does', async () => {
    const socket: Socket = connect(baseUrl, { auth: { token: client.token }, transports: ['websocket'], reconnection: false, forceNew: true });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      });
      const seen: { type: string; seq: number }[] = [];
      const job = await client.submit({ type: 'chatty', payload: { count: 50 }, runAt: new Date(Date.now() + 300).toISOString() });
      socket.on('job.delta', (event: { seq: number }) => seen.push({ type: 'job.delta', seq: event.seq }));
      socket.on('job.completed', (event: { seq: number }) => seen.push({ type: 'job.completed', seq: event.seq }));
      const ack = (await socket.timeout(5000).emitWithAck('subscribe', { jobId: job.id, fromSeq: 0 })) as { ok: boolean };
      expect(ack.ok).toBe(true);
      const deadline = Date.now() + 10_000;
      while (!seen.some((event) => event.type === 'job.completed') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(seen.filter((event) => event.type === 'job.delta')).toHaveLength(50);
      const seqs = seen.map((event) => event.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).toBe(seqs.length);
    } finally {
      socket.close();
    }
  });

  it('streams over SSE on the api process until the job run by the worker ends', async () => {
    const job = await client.submit({ type: 'chatty', payload: { count: 20 } });
    const response = await fetch(`${baseUrl}/v1/jobs/${job.id}/events`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${client.token}` } });
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text.match(/^event: job\.delta$/gm)).toHaveLength(20);
    expect(text).toMatch(/event: job\.completed/);
  });

  it('stops a handler running in the worker process when the api process cancels its job', async () => {
    const job = await client.submit({ type: 'sleepy', payload: { ms: 10_000 } });
    await client.waitFor(job.id, (view) => view.state === 'active');
    expect((await client.post(`/v1/jobs/${job.id}/cancel`)).statusCode).toBe(200);
    // Milliseconds over Redis pub/sub; the deadline is for a loaded machine.
    const deadline = Date.now() + 10_000;
    while (!probe.aborted.has(job.id) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(probe.aborted.has(job.id)).toBe(true);
    expect(await client.get(job.id)).toMatchObject({ state: 'cancelled' });
  });

  it('sends, from the worker process, one webhook per event committed by either process', async () => {
    const receiver = await startLoopbackServer((_request, response) => response.writeHead(204).end());
    try {
      const created = await client.post('/v1/webhooks', { url: receiver.url('/hook'), events: ['job.created', 'job.completed'] });
      expect(created.statusCode).toBe(201);
      const submitted = await api.request({
        method: 'POST',
        url: '/v1/jobs/bulk',
        token: client.token,
        body: { jobs: Array.from({ length: 40 }, (_, index) => ({ type: 'echo', payload: { index } })) },
      });
      expect(submitted.statusCode).toBe(201);
      const ids = (submitted.json() as { jobs: { id: string }[] }).jobs.map((job) => job.id);
      const deadline = Date.now() + 15_000;
      while (receiver.requests.length < 80 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      const seen = receiver.requests.map((request) => JSON.parse(request.body) as { type: string; data: { job: { id: string } } });
      for (const type of ['job.created', 'job.completed']) {
        const jobs = seen.filter((body) => body.type === type).map((body) => body.data.job.id);
        expect(jobs.sort()).toEqual([...ids].sort());
      }
    } finally {
      await receiver.close();
    }
  });

  it('counts failed logins in Redis, so every process enforces one limit', async () => {
    const email = 'shared-throttle@example.com';
    await api.createUser(email, 'right-password-1');
    const attempt = (server: TestRuntime, password: string) =>
      server.request({ method: 'POST', url: '/v1/auth/login', body: { email, password }, remoteAddress: '10.7.7.7' });
    // Failures against one api process…
    for (let i = 0; i < 5; i += 1) expect((await attempt(api, 'wrong-password')).statusCode).toBe(401);
    // …block the same account and address at a second one (a fresh server on the same deployment).
    const second = await start('api');
    try {
      const blocked = await attempt(second, 'right-password-1');
      expect(blocked.statusCode).toBe(429);
      expect(blocked.json()).toMatchObject({ code: 'JOBLINE_RATE_LIMITED' });
    } finally {
      await second.close();
    }
  });
});
