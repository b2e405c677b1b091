import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { TestRuntime } from '../helpers/runtime.js';
import { Client, probe, sleepMs, targets } from './harness.js';

describe.each(targets)('job lifecycle on the $name engine', (target) => {
  let server: TestRuntime;
  let client: Client;

  beforeAll(async () => {
    server = await target.start();
    client = new Client(server, (await server.login()).accessToken);
  });
  afterAll(async () => server.close());
  beforeEach(() => probe.reset());

  it('runs a job to completion and records its events in order', async () => {
    const submitted = await client.submit({ type: 'echo', payload: { hello: 'world' } });
    expect(submitted.state).toBe('queued');
    const job = await client.waitFor(submitted.id);
    expect(job).toMatchObject({ state: 'completed', attemptsMade: 1, result: { echoed: { hello: 'world' } }, error: null });
    expect(Date.parse(job.startedAt!)).toBeGreaterThanOrEqual(Date.parse(job.createdAt));
    const events = await client.events(submitted.id);
    expect(events.map((event) => [event.seq, event.type])).toEqual([
      [1, 'job.created'],
      [2, 'job.active'],
      [3, 'job.completed'],
    ]);
    expect(events[2]?.data).toEqual({ result: { echoed: { hello: 'world' } } });
  });

  it('keeps every progress, delta and log event, numbered without gaps', async () => {
    const submitted = await client.submit({ type: 'chatty', payload: { count: 500 } });
    const job = await client.waitFor(submitted.id);
    expect(job.state).toBe('completed');
    expect(job.progress).toBe(100);
    const events = await client.events(submitted.id);
    expect(events.map((event) => event.seq)).toEqual(events.map((_event, index) => index + 1));
    const deltas = events.filter((event) => event.type === 'job.delta').map((event) => event.data['chunk']);
    expect(deltas).toEqual(Array.from({ length: 500 }, (_value, index) => `chunk ${index + 1}`));
    expect(events.filter((event) => event.type === 'job.progress')).toHaveLength(50);
    expect(events.at(-2)).toMatchObject({ type: 'job.log', data: { message: 'done' } });
    expect(events.at(-1)?.type).toBe('job.completed');
  });

  it('runs higher priorities first, and in submission order within a priority', async () => {
    expect((await client.post('/v1/admin/queues/ordered/pause')).statusCode).toBe(200);
    const plan: [string, number][] = [
      ['a', 0],
      ['b', 5],
      ['c', -3],
      ['d', 5],
      ['e', 10],
      ['f', 0],
    ];
    const ids: string[] = [];
    for (const [name, priority] of plan) ids.push((await client.submit({ type: 'ordered', payload: { name }, priority })).id);
    expect((await client.post('/v1/admin/queues/ordered/resume')).statusCode).toBe(200);
    for (const id of ids) await client.waitFor(id);
    expect(probe.order).toEqual(['e', 'b', 'd', 'a', 'f', 'c']);
  });

  it('holds a delayed job until its time, and runs a past runAt at once', async () => {
    // 1.5 s: a loaded machine still reads the job well before its time.
    const delayed = await client.submit({ type: 'echo', delay: 1500 });
    expect(delayed.state).toBe('scheduled');
    expect(Date.parse(delayed.runAt) - Date.parse(delayed.createdAt)).toBe(1500);
    await sleepMs(100);
    expect((await client.get(delayed.id)).state).toBe('scheduled');
    const job = await client.waitFor(delayed.id);
    expect(job.state).toBe('completed');
    expect(probe.starts.get(delayed.id)![0]! - Date.parse(delayed.createdAt)).toBeGreaterThanOrEqual(1490);

    const past = await client.submit({ type: 'echo', runAt: '2000-01-01T00:00:00Z' });
    expect(past.state).toBe('queued');
    expect((await client.waitFor(past.id)).state).toBe('completed');
  });

  it('retries with fixed backoff, spacing the attempts by the delay', async () => {
    const submitted = await client.submit({
      type: 'flaky',
      payload: { succeedOn: 3 },
      attempts: 3,
      backoff: { type: 'fixed', delay: 250, jitter: 0 },
    });
    const job = await client.waitFor(submitted.id);
    expect(job).toMatchObject({ state: 'completed', attemptsMade: 3, result: { attempt: 3 } });
    const starts = probe.starts.get(submitted.id)!;
    expect(starts).toHaveLength(3);
    for (let i = 1; i < starts.length; i += 1) {
      const gap = starts[i]! - starts[i - 1]!;
      expect(gap).toBeGreaterThanOrEqual(245);
      // Not held back much past the delay (the slack is for a loaded machine).
      expect(gap).toBeLessThan(250 + 2000);
    }
    const retrying = (await client.events(submitted.id)).filter((event) => event.type === 'job.retrying');
    expect(retrying.map((event) => event.data['attempt'])).toEqual([1, 2]);
    expect(retrying[0]?.data['error']).toEqual({ message: 'attempt 1 failed', code: 'FLAKY' });
  });

  it('retries with exponential backoff, doubling the delay', async () => {
    const submitted = await client.submit({
      type: 'flaky',
      payload: { succeedOn: 3 },
      attempts: 3,
      backoff: { type: 'exponential', delay: 150, jitter: 0 },
    });
    await client.waitFor(submitted.id);
    const [first, second, third] = probe.starts.get(submitted.id)!;
    expect(second! - first!).toBeGreaterThanOrEqual(145);
    expect(third! - second!).toBeGreaterThanOrEqual(295);
    expect(third! - second!).toBeLessThan(300 + 2000);
  });

  it('moves a job out of attempts to failed (the dead-letter queue), and a manual retry runs it again', async () => {
    const submitted = await client.submit({ type: 'flaky', attempts: 2, backoff: { type: 'fixed', delay: 10 } });
    const failed = await client.waitFor(submitted.id);
    expect(failed).toMatchObject({ state: 'failed', attemptsMade: 2, error: { message: 'attempt 2 failed', code: 'FLAKY' } });
    expect((await client.events(submitted.id)).at(-1)).toMatchObject({ type: 'job.failed', data: { error: { code: 'FLAKY' } } });
    const dead = await server.request({ method: 'GET', url: '/v1/jobs?state=failed&type=flaky', token: client.token });
    expect(dead.json().items.map((job: { id: string }) => job.id)).toContain(submitted.id);

    const retried = await client.post(`/v1/jobs/${submitted.id}/retry`);
    expect(retried.statusCode).toBe(200);
    expect(retried.json()).toMatchObject({ state: 'queued', attemptsMade: 0, error: null });
    const again = await client.waitFor(submitted.id, (job) => job.state === 'failed' && job.attemptsMade === 2);
    expect(again.state).toBe('failed');
    expect(probe.starts.get(submitted.id)).toHaveLength(4);
  });

  it('fails at once on NonRetriableError', async () => {
    const submitted = await client.submit({ type: 'fatal', attempts: 5 });
    const job = await client.waitFor(submitted.id);
    expect(job).toMatchObject({ state: 'failed', attemptsMade: 1, error: { message: 'this cannot work', code: 'BAD_INPUT' } });
  });

  it('retries no sooner than a RetryAfterError asks', async () => {
    const submitted = await client.submit({ type: 'retry-after', payload: { ms: 300 }, backoff: { type: 'fixed', delay: 0 } });
    const job = await client.waitFor(submitted.id);
    expect(job.state).toBe('completed');
    const [first, second] = probe.starts.get(submitted.id)!;
    expect(second! - first!).toBeGreaterThanOrEqual(295);
  });

  it('fails an attempt that outlives its timeout, firing its signal, even if the handler ignores it', async () => {
    const submitted = await client.submit({ type: 'sleepy', payload: { ms: 4000, ignoreSignal: true }, timeout: 200, attempts: 1 });
    const started = Date.now();
    const job = await client.waitFor(submitted.id);
    // Well before the handler's own 4 s end (with room for a loaded machine).
    expect(Date.now() - started).toBeLessThan(3000);
    expect(job).toMatchObject({ state: 'failed', attemptsMade: 1, error: { code: 'JOBLINE_JOB_TIMEOUT' } });
    expect(probe.aborted.has(submitted.id)).toBe(true);
  });

  it('retries a timed-out attempt while attempts remain', async () => {
    const submitted = await client.submit({ type: 'sleepy', payload: { ms: 2000 }, timeout: 100, attempts: 2, backoff: { type: 'fixed', delay: 0 } });
    const job = await client.waitFor(submitted.id);
    expect(job).toMatchObject({ state: 'failed', attemptsMade: 2, error: { code: 'JOBLINE_JOB_TIMEOUT' } });
  });
});
