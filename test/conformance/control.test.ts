import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { TestRuntime } from '../helpers/runtime.js';
import { Client, eventually, probe, sleepMs, targets } from './harness.js';

describe.each(targets)('steering jobs on the $name engine', (target) => {
  let server: TestRuntime;
  let client: Client;
  let other: Client;

  beforeAll(async () => {
    server = await target.start();
    client = new Client(server, (await server.login()).accessToken);
    await server.createUser('other@example.com', 'other-password-1');
    other = new Client(server, (await server.login('other@example.com', 'other-password-1')).accessToken);
  });
  afterAll(async () => server.close());
  beforeEach(() => probe.reset());

  it('cancels a queued job, which then never runs', async () => {
    await client.post('/v1/admin/queues/held/pause');
    const job = await client.submit({ type: 'echo', queue: 'held' });
    const cancelled = await client.post(`/v1/jobs/${job.id}/cancel`);
    expect(cancelled.statusCode).toBe(200);
    expect(cancelled.json()).toMatchObject({ state: 'cancelled' });
    await client.post('/v1/admin/queues/held/resume');
    await sleepMs(200);
    expect((await client.get(job.id)).state).toBe('cancelled');
    expect(probe.starts.has(job.id)).toBe(false);
    expect((await client.events(job.id)).map((event) => event.type)).toEqual(['job.created', 'job.cancelled']);
  });

  it('cancels a scheduled job', async () => {
    const job = await client.submit({ type: 'echo', delay: 60_000 });
    expect((await client.post(`/v1/jobs/${job.id}/cancel`)).json().state).toBe('cancelled');
  });

  it('cancels an active job: its signal fires and its result is discarded', async () => {
    const job = await client.submit({ type: 'sleepy', payload: { ms: 5000 } });
    await client.waitFor(job.id, (view) => view.state === 'active');
    const cancelled = await client.post(`/v1/jobs/${job.id}/cancel`);
    expect(cancelled.json().state).toBe('cancelled');
    await eventually(() => probe.aborted.has(job.id), 'the handler’s signal to fire');
    expect(probe.aborted.has(job.id)).toBe(true);
    await sleepMs(100);
    const after = await client.get(job.id);
    expect(after).toMatchObject({ state: 'cancelled', result: null });
    expect((await client.events(job.id)).at(-1)?.type).toBe('job.cancelled');
  });

  it('refuses to cancel a finished job, or to retry a running one (409)', async () => {
    const job = await client.waitFor((await client.submit({ type: 'echo' })).id);
    const cancel = await client.post(`/v1/jobs/${job.id}/cancel`);
    expect(cancel.statusCode).toBe(409);
    expect(cancel.json().code).toBe('JOBLINE_JOB_STATE_CONFLICT');
    const retry = await client.post(`/v1/jobs/${job.id}/retry`);
    expect(retry.statusCode).toBe(409);
  });

  it('fails a job that did not start within its ttl as expired', async () => {
    await client.post('/v1/admin/queues/stale/pause');
    const job = await client.submit({ type: 'echo', queue: 'stale', ttl: 150 });
    const expired = await client.waitFor(job.id, (view) => view.state !== 'queued');
    expect(expired).toMatchObject({ state: 'failed', attemptsMade: 0, error: { code: 'JOBLINE_JOB_EXPIRED' } });
    await client.post('/v1/admin/queues/stale/resume');
    await sleepMs(100);
    expect(probe.starts.has(job.id)).toBe(false);
  });

  it('runs a job whose ttl has not run out', async () => {
    const job = await client.submit({ type: 'echo', ttl: 60_000 });
    expect((await client.waitFor(job.id)).state).toBe('completed');
  });

  it('returns the first job for a repeated idempotency key, per user', async () => {
    const first = await server.request({ method: 'POST', url: '/v1/jobs', token: client.token, body: { type: 'echo', payload: { n: 1 } }, headers: { 'idempotency-key': 'order-42' } });
    expect(first.statusCode).toBe(201);
    const again = await server.request({ method: 'POST', url: '/v1/jobs', token: client.token, body: { type: 'echo', payload: { n: 2 } }, headers: { 'idempotency-key': 'order-42' } });
    expect(again.statusCode).toBe(200);
    expect(again.headers['jobline-deduplicated']).toBe('idempotencyKey');
    expect(again.json().id).toBe(first.json().id);
    expect(again.json().payload).toEqual({ n: 1 });
    // Another user's key is their own.
    const theirs = await server.request({ method: 'POST', url: '/v1/jobs', token: other.token, body: { type: 'echo' }, headers: { 'idempotency-key': 'order-42' } });
    expect(theirs.statusCode).toBe(201);
    expect(theirs.json().id).not.toBe(first.json().id);
    // The body field is the same key.
    const viaBody = await server.request({ method: 'POST', url: '/v1/jobs', token: client.token, body: { type: 'echo', idempotencyKey: 'order-42' } });
    expect(viaBody.json().id).toBe(first.json().id);
  });

  it('keeps at most one queued or active job per singleton key', async () => {
    await client.post('/v1/admin/queues/single/pause');
    const first = await client.submit({ type: 'echo', queue: 'single', singletonKey: 'nightly-report' });
    const duplicate = await server.request({ method: 'POST', url: '/v1/jobs', token: client.token, body: { type: 'echo', queue: 'single', singletonKey: 'nightly-report' } });
    expect(duplicate.statusCode).toBe(200);
    expect(duplicate.headers['jobline-deduplicated']).toBe('singletonKey');
    expect(duplicate.json().id).toBe(first.id);
    await client.post('/v1/admin/queues/single/resume');
    await client.waitFor(first.id);
    const next = await client.submit({ type: 'echo', queue: 'single', singletonKey: 'nightly-report' });
    expect(next.id).not.toBe(first.id);
    await client.waitFor(next.id);
  });

  it('pauses a queue that has no jobs yet, holding what is submitted, and resumes it', async () => {
    const paused = await client.post('/v1/admin/queues/later/pause');
    expect(paused.json()).toMatchObject({ name: 'later', paused: true });
    const job = await client.submit({ type: 'echo', queue: 'later' });
    await sleepMs(300);
    expect((await client.get(job.id)).state).toBe('queued');
    const queues = (await server.request({ method: 'GET', url: '/v1/admin/queues', token: client.token })).json();
    expect(queues.find((queue: { name: string }) => queue.name === 'later')).toMatchObject({ paused: true, counts: { queued: 1 } });
    const resumed = await client.post('/v1/admin/queues/later/resume');
    expect(resumed.json().paused).toBe(false);
    expect((await client.waitFor(job.id)).state).toBe('completed');
  });

  it('lets a running job finish when its queue is paused', async () => {
    // Long enough that a poll on a loaded machine still sees it active, and is paused while it runs.
    const job = await client.submit({ type: 'sleepy', queue: 'default', payload: { ms: 1000 } });
    await client.waitFor(job.id, (view) => view.state === 'active');
    await client.post('/v1/admin/queues/default/pause');
    try {
      expect((await client.waitFor(job.id)).state).toBe('completed');
    } finally {
      await client.post('/v1/admin/queues/default/resume');
    }
  });
});
