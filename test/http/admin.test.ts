import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Client, probe, registerProbeHandlers, sleepMs, type JobView } from '../conformance/harness.js';
import { problemOf, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const STATES = ['queued', 'scheduled', 'active', 'completed', 'failed', 'cancelled'] as const;

interface QueueInfo {
  name: string;
  paused: boolean;
  counts: Record<(typeof STATES)[number], number>;
}

const noJobs = { queued: 0, scheduled: 0, active: 0, completed: 0, failed: 0, cancelled: 0 };

describe('admin API', () => {
  let server: TestRuntime;
  let admin: Client;
  let user: Client;

  const call = (token: string | undefined, method: 'GET' | 'POST' | 'DELETE', url: string) =>
    server.request({ method, url, ...(token === undefined ? {} : { token }) });

  async function queues(): Promise<QueueInfo[]> {
    const response = await call(admin.token, 'GET', '/v1/admin/queues');
    expect(response.statusCode, response.body).toBe(200);
    return response.json<QueueInfo[]>();
  }

  async function queue(name: string): Promise<QueueInfo | undefined> {
    return (await queues()).find((info) => info.name === name);
  }

  async function adminPost<T>(url: string): Promise<T> {
    const response = await call(admin.token, 'POST', url);
    expect(response.statusCode, response.body).toBe(200);
    return response.json<T>();
  }

  async function finished(jobs: JobView[]): Promise<JobView[]> {
    return Promise.all(jobs.map((job) => admin.waitFor(job.id)));
  }

  beforeAll(async () => {
    // A short grace period: a failing test must not leave close() waiting on a sleepy job.
    server = await startTestRuntime({ handlers: registerProbeHandlers, env: { JOBLINE_SHUTDOWN_GRACE: '500' } });
    admin = new Client(server, (await server.login()).accessToken);
    await server.createUser('ordinary@example.com', 'ordinary-password-1');
    user = new Client(server, (await server.login('ordinary@example.com', 'ordinary-password-1')).accessToken);
  });
  afterAll(async () => server.close());
  beforeEach(() => probe.reset());

  describe('access', () => {
    const routes: ['GET' | 'POST' | 'DELETE', string][] = [
      ['GET', '/v1/admin/queues'],
      ['POST', '/v1/admin/queues/guarded/pause'],
      ['POST', '/v1/admin/queues/guarded/resume'],
      ['POST', '/v1/admin/queues/guarded/retry-failed'],
      ['DELETE', '/v1/admin/queues/guarded/jobs?state=completed'],
      ['DELETE', '/v1/admin/queues/guarded/jobs?state=failed&olderThan=2030-01-01T00:00:00Z'],
    ];

    it('refuses an ordinary user with 403 on every admin route, and changes nothing', async () => {
      const failed = await user.submit({ type: 'flaky', queue: 'guarded', attempts: 1 });
      expect((await user.waitFor(failed.id)).state).toBe('failed');
      for (const [method, url] of routes) {
        const response = await call(user.token, method, url);
        expect(response.statusCode, `${method} ${url}`).toBe(403);
        expect(problemOf(response).code).toBe('JOBLINE_FORBIDDEN');
      }
      expect(await queue('guarded')).toEqual({ name: 'guarded', paused: false, counts: { ...noJobs, failed: 1 } });
      expect((await user.get(failed.id)).state).toBe('failed');
    });

    it('answers 401 on every admin route without a token or with a bad one', async () => {
      for (const [method, url] of routes) {
        const missing = await call(undefined, method, url);
        expect(missing.statusCode, `${method} ${url}`).toBe(401);
        expect(problemOf(missing).code).toBe('JOBLINE_UNAUTHENTICATED');
        expect((await call('jl_not-a-real-key', method, url)).statusCode, `${method} ${url}`).toBe(401);
      }
      expect((await queue('guarded'))?.paused).toBe(false);
    });

    it('needs the admin scope on an administrator’s API key', async () => {
      const createKey = async (scopes: string[]) => {
        const response = await admin.post('/v1/api-keys', { name: scopes.join(' '), scopes });
        expect(response.statusCode, response.body).toBe(201);
        return response.json<{ key: string }>().key;
      };
      const jobsKey = await createKey(['jobs:read', 'jobs:write']);
      const denied = await call(jobsKey, 'GET', '/v1/admin/queues');
      expect(denied.statusCode).toBe(403);
      expect(problemOf(denied).code).toBe('JOBLINE_INSUFFICIENT_SCOPE');
      const adminKey = await createKey(['admin']);
      expect((await call(adminKey, 'GET', '/v1/admin/queues')).statusCode).toBe(200);
    });
  });

  describe('GET /v1/admin/queues', () => {
    it('lists every queue by name with its count of jobs in each state and whether it is paused', async () => {
      const done = await Promise.all([admin.submit({ type: 'echo', queue: 'counts' }), admin.submit({ type: 'echo', queue: 'counts' })]);
      const dead = await admin.submit({ type: 'flaky', queue: 'counts', attempts: 1 });
      await finished([...done, dead]);
      const running = await admin.submit({ type: 'sleepy', queue: 'counts', payload: { ms: 10_000 } });
      await admin.waitFor(running.id, (job) => job.state === 'active');
      expect((await adminPost<QueueInfo>('/v1/admin/queues/counts/pause')).paused).toBe(true);
      const waiting = [
        await admin.submit({ type: 'echo', queue: 'counts' }),
        await admin.submit({ type: 'echo', queue: 'counts' }),
        await admin.submit({ type: 'echo', queue: 'counts' }),
      ];
      expect((await admin.post(`/v1/jobs/${waiting[0]?.id}/cancel`)).statusCode).toBe(200);
      await admin.submit({ type: 'echo', queue: 'counts', delay: 600_000 });
      await adminPost<QueueInfo>('/v1/admin/queues/empty-but-paused/pause');

      const listed = await queues();
      expect(listed.map((info) => info.name)).toEqual([...listed.map((info) => info.name)].sort((a, b) => a.localeCompare(b)));
      for (const info of listed) {
        expect(Object.keys(info.counts).sort()).toEqual([...STATES].sort());
        expect(typeof info.paused).toBe('boolean');
      }
      expect(listed.find((info) => info.name === 'counts')).toEqual({
        name: 'counts',
        paused: true,
        counts: { queued: 2, scheduled: 1, active: 1, completed: 2, failed: 1, cancelled: 1 },
      });
      // A paused queue with no jobs is still listed.
      expect(listed.find((info) => info.name === 'empty-but-paused')).toEqual({ name: 'empty-but-paused', paused: true, counts: noJobs });

      expect((await admin.post(`/v1/jobs/${running.id}/cancel`)).statusCode).toBe(200);
      const resumed = await adminPost<QueueInfo>('/v1/admin/queues/counts/resume');
      expect(resumed).toMatchObject({ name: 'counts', paused: false, counts: expect.objectContaining({ cancelled: 2 }) });
      for (const job of waiting.slice(1)) expect((await admin.waitFor(job.id)).state).toBe('completed');
      expect(await queue('counts')).toEqual({
        name: 'counts',
        paused: false,
        counts: { queued: 0, scheduled: 1, active: 0, completed: 4, failed: 1, cancelled: 2 },
      });
    });
  });

  describe('POST /v1/admin/queues/:name/retry-failed', () => {
    it('puts every failed job of the queue back, returns how many, and leaves other queues alone', async () => {
      const failedHere = [
        await user.submit({ type: 'flaky', queue: 'dlq-a', attempts: 1 }),
        await admin.submit({ type: 'flaky', queue: 'dlq-a', attempts: 1 }),
        await user.submit({ type: 'flaky', queue: 'dlq-a', attempts: 1 }),
      ];
      const completedHere = await user.submit({ type: 'echo', queue: 'dlq-a' });
      const failedElsewhere = await user.submit({ type: 'flaky', queue: 'dlq-b', attempts: 1 });
      const settled = await finished([...failedHere, completedHere, failedElsewhere]);
      expect(settled.map((job) => job.state)).toEqual(['failed', 'failed', 'failed', 'completed', 'failed']);

      // Paused, so the retried jobs wait where a client can see them.
      await adminPost<QueueInfo>('/v1/admin/queues/dlq-a/pause');
      expect(await adminPost<{ retried: number }>('/v1/admin/queues/dlq-a/retry-failed')).toEqual({ retried: 3 });
      for (const job of failedHere) {
        expect(await admin.get(job.id)).toMatchObject({ state: 'queued', attemptsMade: 0, error: null, finishedAt: null });
      }
      expect((await admin.get(completedHere.id)).state).toBe('completed');
      expect(await admin.get(failedElsewhere.id)).toMatchObject({ state: 'failed', attemptsMade: 1 });
      expect((await queue('dlq-a'))?.counts).toEqual({ ...noJobs, queued: 3, completed: 1 });
      expect((await queue('dlq-b'))?.counts).toEqual({ ...noJobs, failed: 1 });

      // Resumed, they run again (and, being flaky, fail again).
      await adminPost<QueueInfo>('/v1/admin/queues/dlq-a/resume');
      for (const job of await finished(failedHere)) expect(job).toMatchObject({ state: 'failed', attemptsMade: 1 });
      for (const job of failedHere) expect(probe.starts.get(job.id)).toHaveLength(2);
      expect(probe.starts.get(completedHere.id)).toHaveLength(1);
      expect(probe.starts.get(failedElsewhere.id)).toHaveLength(1);

      // Retried jobs are no longer failed: retrying again finds none.
      await adminPost<QueueInfo>('/v1/admin/queues/dlq-b/pause');
      expect(await adminPost<{ retried: number }>('/v1/admin/queues/dlq-b/retry-failed')).toEqual({ retried: 1 });
      expect(await adminPost<{ retried: number }>('/v1/admin/queues/dlq-b/retry-failed')).toEqual({ retried: 0 });
      expect((await queue('dlq-b'))?.counts).toEqual({ ...noJobs, queued: 1 });
      expect(await adminPost<{ retried: number }>('/v1/admin/queues/no-such-queue/retry-failed')).toEqual({ retried: 0 });
    });
  });

  describe('DELETE /v1/admin/queues/:name/jobs', () => {
    const clean = (name: string, query: string) => call(admin.token, 'DELETE', `/v1/admin/queues/${name}/jobs?${query}`);
    const exists = async (job: JobView) => (await call(admin.token, 'GET', `/v1/jobs/${job.id}`)).statusCode === 200;

    it('deletes only that queue’s jobs in that state, only those finished before olderThan when given', async () => {
      const [early1, early2] = await finished([
        await user.submit({ type: 'echo', queue: 'clean-a' }),
        await user.submit({ type: 'echo', queue: 'clean-a' }),
      ]);
      if (!early1?.finishedAt || !early2?.finishedAt) throw new Error('the early jobs did not finish');
      const cutoff = new Date(Math.max(Date.parse(early1.finishedAt), Date.parse(early2.finishedAt)) + 1).toISOString();
      await sleepMs(5);
      const [late, failed, otherQueue] = await finished([
        await user.submit({ type: 'echo', queue: 'clean-a' }),
        await user.submit({ type: 'flaky', queue: 'clean-a', attempts: 1 }),
        await admin.submit({ type: 'echo', queue: 'clean-b' }),
      ]);
      if (!late || !failed || !otherQueue) throw new Error('the later jobs did not finish');
      expect(Date.parse(late.finishedAt ?? '')).toBeGreaterThan(Date.parse(cutoff));

      const older = await clean('clean-a', `state=completed&olderThan=${cutoff}`);
      expect(older.statusCode).toBe(200);
      expect(older.json()).toEqual({ deleted: 2 });
      expect(await exists(early1)).toBe(false);
      expect(await exists(early2)).toBe(false);
      expect(await exists(late)).toBe(true);
      const events = await server.runtime.database.db.selectFrom('job_events').select('seq').where('job_id', 'in', [early1.id, early2.id]).execute();
      expect(events).toEqual([]);

      expect((await clean('clean-a', 'state=completed')).json()).toEqual({ deleted: 1 });
      expect(await exists(late)).toBe(false);
      expect(await exists(failed)).toBe(true);
      expect(await exists(otherQueue)).toBe(true);
      expect((await queue('clean-a'))?.counts).toEqual({ ...noJobs, failed: 1 });
      expect((await queue('clean-b'))?.counts).toEqual({ ...noJobs, completed: 1 });

      expect((await clean('clean-a', 'state=cancelled')).json()).toEqual({ deleted: 0 });
      expect((await clean('clean-a', 'state=failed')).json()).toEqual({ deleted: 1 });
      expect(await exists(failed)).toBe(false);
      expect((await clean('no-such-queue', 'state=completed')).json()).toEqual({ deleted: 0 });
    });

    it('never deletes unfinished jobs, and answers 400 for a bad state or olderThan', async () => {
      await adminPost<QueueInfo>('/v1/admin/queues/clean-held/pause');
      const waiting = await admin.submit({ type: 'echo', queue: 'clean-held' });
      for (const query of ['state=queued', 'state=active', 'state=scheduled', 'state=done', '', 'state=completed&olderThan=last-week', 'state=completed&olderThan=2030-01-01']) {
        const response = await clean('clean-held', query);
        expect(response.statusCode, query).toBe(400);
        expect(problemOf(response).code, query).toBe('JOBLINE_VALIDATION_FAILED');
        expect(problemOf(response).errors?.[0]?.path, query).toMatch(/^querystring\./);
      }
      expect((await admin.get(waiting.id)).state).toBe('queued');
    });
  });

  describe('queue names', () => {
    const badNames = ['-leading-dash', '.hidden', 'has%20space', 'a%2Fb', '%C3%A9t%C3%A9', 'semi%3Bcolon'];
    const queueCalls = (name: string): ['POST' | 'DELETE', string][] => [
      ['POST', `/v1/admin/queues/${name}/pause`],
      ['POST', `/v1/admin/queues/${name}/resume`],
      ['POST', `/v1/admin/queues/${name}/retry-failed`],
      ['DELETE', `/v1/admin/queues/${name}/jobs?state=completed`],
    ];

    it('answers 400 naming params.name for a name that is not a queue name, on every queue route', async () => {
      for (const name of badNames) {
        for (const [method, url] of queueCalls(name)) {
          const response = await call(admin.token, method, url);
          expect(response.statusCode, `${method} ${url}`).toBe(400);
          expect(problemOf(response).code).toBe('JOBLINE_VALIDATION_FAILED');
          expect(problemOf(response).errors?.[0]?.path).toBe('params.name');
        }
      }
      const names = (await queues()).map((info) => info.name);
      expect(names.filter((name) => !/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/.test(name))).toEqual([]);
    });

    it('takes names of letters, digits and _ . : -', async () => {
      for (const name of ['reports.daily:eu-1_b', 'Q', 'q'.repeat(100)]) {
        expect(await adminPost<QueueInfo>(`/v1/admin/queues/${name}/pause`)).toEqual({ name, paused: true, counts: noJobs });
        expect(await adminPost<QueueInfo>(`/v1/admin/queues/${name}/resume`)).toEqual({ name, paused: false, counts: noJobs });
      }
    });

    it('steers a queue whose name has 150 characters, as jobs may name it', async () => {
      const name = `long-${'q'.repeat(145)}`;
      const job = await admin.submit({ type: 'echo', queue: name });
      expect(job).toMatchObject({ queue: name });
      await admin.waitFor(job.id);
      expect((await queue(name))?.counts.completed).toBe(1);
      for (const [method, url] of queueCalls(name)) {
        const response = await call(admin.token, method, url);
        expect(response.statusCode, `${method} ${url}`).toBe(200);
      }
    });

    it('answers a name over 200 characters with a 4xx problem+json', async () => {
      const response = await call(admin.token, 'POST', `/v1/admin/queues/${'x'.repeat(201)}/pause`);
      expect(response.statusCode).toBeGreaterThanOrEqual(400);
      expect(response.statusCode).toBeLessThan(500);
      expect(problemOf(response).code).toMatch(/^JOBLINE_/);
    });
  });
});
