import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PublicJob } from '../../src/wire/jobs.js';
import { Client, registerProbeHandlers, sleepMs } from '../conformance/harness.js';
import { problemOf, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/** The job object of API.md "Jobs", as a client reads it. */
type Job = PublicJob;

interface Page {
  items: Job[];
  nextCursor: string | null;
}

interface JobEvent {
  type: string;
  jobId: string;
  seq: number;
  at: string;
  data: Record<string, unknown>;
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const KIB = 1024;

interface Session {
  token: string;
  userId: string;
  client: Client;
}

describe('jobs API', () => {
  let server: TestRuntime;
  let admin: Session;

  const request = (token: string | undefined, method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown, headers?: Record<string, string>) =>
    server.request({ method, url, ...(token === undefined ? {} : { token }), ...(body === undefined ? {} : { body }), ...(headers ? { headers } : {}) });

  /** A new ordinary user, logged in. */
  async function newUser(name: string): Promise<Session> {
    const email = `${name}@example.com`;
    await server.createUser(email, `${name}-password-1`);
    const session = await server.login(email, `${name}-password-1`);
    return { token: session.accessToken, userId: session.userId, client: new Client(server, session.accessToken) };
  }

  async function submit(session: Session, body: Record<string, unknown>): Promise<Job> {
    const response = await request(session.token, 'POST', '/v1/jobs', body);
    expect(response.statusCode, response.body).toBe(201);
    return response.json<Job>();
  }

  async function list(session: Session, query = ''): Promise<Page> {
    const response = await request(session.token, 'GET', `/v1/jobs${query ? `?${query}` : ''}`);
    expect(response.statusCode, response.body).toBe(200);
    return response.json<Page>();
  }

  /** Every job the session sees (with `query`), following cursors. */
  async function listAll(session: Session, query = ''): Promise<Job[]> {
    const jobs: Job[] = [];
    let cursor: string | null = null;
    do {
      const parts: string[] = [query, 'limit=200', cursor === null ? '' : `cursor=${encodeURIComponent(cursor)}`];
      const page: Page = await list(session, parts.filter(Boolean).join('&'));
      jobs.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor !== null);
    return jobs;
  }

  const ids = (jobs: { id: string }[]) => jobs.map((job) => job.id);

  async function pauseQueue(name: string): Promise<void> {
    const response = await request(admin.token, 'POST', `/v1/admin/queues/${name}/pause`);
    expect(response.statusCode, response.body).toBe(200);
  }

  beforeAll(async () => {
    server = await startTestRuntime({ handlers: registerProbeHandlers });
    const session = await server.login();
    admin = { token: session.accessToken, userId: session.userId, client: new Client(server, session.accessToken) };
  });
  afterAll(async () => server.close());

  describe('POST /v1/jobs', () => {
    let user: Session;
    beforeAll(async () => {
      user = await newUser('submitter');
    });

    it('answers 201 with the whole job object, queued, with ISO times and the defaults', async () => {
      const response = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', payload: { to: 'ada' } });
      expect(response.statusCode).toBe(201);
      expect(String(response.headers['content-type'])).toMatch(/^application\/json/);
      const job = response.json<Job>();
      expect(job).toEqual(
        expect.objectContaining({
          id: expect.stringMatching(UUID),
          type: 'echo',
          queue: 'default',
          state: 'queued',
          priority: 0,
          payload: { to: 'ada' },
          result: null,
          error: null,
          progress: null,
          attemptsMade: 0,
          maxAttempts: 3,
          tags: [],
          createdAt: expect.stringMatching(ISO_UTC),
          runAt: expect.stringMatching(ISO_UTC),
          startedAt: null,
          finishedAt: null,
          ownerId: user.userId,
          scheduleId: null,
        }),
      );
      expect(Date.parse(job.runAt)).toBe(Date.parse(job.createdAt));
      expect(Math.abs(Date.parse(job.createdAt) - Date.now())).toBeLessThan(60_000);
      // The same job is there to read back.
      const fetched = await request(user.token, 'GET', `/v1/jobs/${job.id}`);
      expect(fetched.json<Job>()).toMatchObject({ id: job.id, type: 'echo', payload: { to: 'ada' }, createdAt: job.createdAt });
    });

    it('puts a job in its handler’s queue unless the submission names one', async () => {
      expect((await submit(user, { type: 'ordered', payload: { name: 'x' } })).queue).toBe('ordered');
      expect((await submit(user, { type: 'ordered', payload: { name: 'y' }, queue: 'elsewhere' })).queue).toBe('elsewhere');
      expect((await submit(user, { type: 'echo', queue: 'reports.daily:eu-1' })).queue).toBe('reports.daily:eu-1');
    });

    it('keeps what the submission asks for, at the edges of each range', async () => {
      const high = await submit(user, { type: 'echo', priority: 1000, attempts: 7, tags: ['a', 'b', 'a'], backoff: { type: 'fixed', delay: 5, jitter: 1 } });
      expect(high).toMatchObject({ priority: 1000, maxAttempts: 7, tags: ['a', 'b'] });
      expect((await submit(user, { type: 'echo', priority: -1000, attempts: 1 })).priority).toBe(-1000);
      const twenty = Array.from({ length: 20 }, (_, i) => `tag-${i}`);
      expect((await submit(user, { type: 'echo', tags: twenty })).tags).toEqual(twenty);

      const delayed = await submit(user, { type: 'echo', delay: 60_000 });
      expect(delayed.state).toBe('scheduled');
      const wait = Date.parse(delayed.runAt) - Date.parse(delayed.createdAt);
      expect(wait).toBeGreaterThan(59_000);
      expect(wait).toBeLessThanOrEqual(60_000);

      const at = await submit(user, { type: 'echo', runAt: '2099-01-02T03:04:05+02:00' });
      expect(at).toMatchObject({ state: 'scheduled', runAt: '2099-01-02T01:04:05.000Z' });
    });

    it('answers 400 JOBLINE_UNKNOWN_JOB_TYPE for a type no handler knows, listing the known ones', async () => {
      const response = await request(user.token, 'POST', '/v1/jobs', { type: 'no-such-type' });
      expect(response.statusCode).toBe(400);
      expect(problemOf(response).code).toBe('JOBLINE_UNKNOWN_JOB_TYPE');
      expect(problemOf(response).detail).toContain('no-such-type');
      expect(response.json<{ knownTypes: string[] }>().knownTypes).toEqual(expect.arrayContaining(['echo', 'flaky', 'http']));
    });

    it.each([
      ['type missing', { payload: {} }, 'body.type'],
      ['priority above 1000', { type: 'echo', priority: 1001 }, 'body.priority'],
      ['priority below -1000', { type: 'echo', priority: -1001 }, 'body.priority'],
      ['priority not whole', { type: 'echo', priority: 1.5 }, 'body.priority'],
      ['a negative delay', { type: 'echo', delay: -1 }, 'body.delay'],
      ['runAt not ISO', { type: 'echo', runAt: 'tomorrow at noon' }, 'body.runAt'],
      ['runAt a bare date', { type: 'echo', runAt: '2030-01-01' }, 'body.runAt'],
      ['runAt a number', { type: 'echo', runAt: 1_900_000_000_000 }, 'body.runAt'],
      ['attempts 0', { type: 'echo', attempts: 0 }, 'body.attempts'],
      ['attempts above 100', { type: 'echo', attempts: 101 }, 'body.attempts'],
      ['a bogus backoff type', { type: 'echo', backoff: { type: 'linear', delay: 10 } }, 'body.backoff.type'],
      ['backoff without delay', { type: 'echo', backoff: { type: 'fixed' } }, 'body.backoff.delay'],
      ['jitter above 1', { type: 'echo', backoff: { type: 'fixed', delay: 10, jitter: 1.5 } }, 'body.backoff.jitter'],
      ['more than 20 tags', { type: 'echo', tags: Array.from({ length: 21 }, (_, i) => `t${i}`) }, 'body.tags'],
      ['an empty tag', { type: 'echo', tags: ['ok', ''] }, 'body.tags.1'],
      ['a queue name with a space', { type: 'echo', queue: 'my queue' }, 'body.queue'],
      ['timeout 0', { type: 'echo', timeout: 0 }, 'body.timeout'],
      ['ttl negative', { type: 'echo', ttl: -5 }, 'body.ttl'],
    ])('answers 400 JOBLINE_VALIDATION_FAILED for %s, naming the field', async (_case, body, fieldPath) => {
      const response = await request(user.token, 'POST', '/v1/jobs', body);
      expect(response.statusCode).toBe(400);
      const problem = problemOf(response);
      expect(problem.code).toBe('JOBLINE_VALIDATION_FAILED');
      expect(problem.errors?.map((error) => error.path)).toContain(fieldPath);
    });

    it('answers 400 JOBLINE_VALIDATION_FAILED for an unknown top-level field, naming it in the detail', async () => {
      const response = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', prority: 5 });
      expect(response.statusCode).toBe(400);
      const problem = problemOf(response);
      expect(problem.code).toBe('JOBLINE_VALIDATION_FAILED');
      expect(problem.detail).toContain('body.prority: is not a known field');
    });

    it('names an unknown top-level field in errors[].path', async () => {
      const response = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', prority: 5 });
      expect(problemOf(response).errors?.map((error) => error.path)).toContain('body.prority');
    });

    it('answers 400 when a submission has both delay and runAt', async () => {
      const response = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', delay: 1000, runAt: '2099-01-01T00:00:00Z' });
      expect(response.statusCode).toBe(400);
      expect(problemOf(response).detail).toMatch(/delay.*runAt/);
    });

    it('takes a payload of exactly 256 KiB and answers 413 JOBLINE_JOB_PAYLOAD_TOO_LARGE for one byte more', async () => {
      // A JSON string of n characters is n + 2 bytes (its quotes).
      const atLimit = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', queue: 'big', payload: 'x'.repeat(256 * KIB - 2) });
      expect(atLimit.statusCode).toBe(201);
      const over = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', queue: 'big', payload: 'x'.repeat(256 * KIB - 1) });
      expect(over.statusCode).toBe(413);
      expect(problemOf(over).code).toBe('JOBLINE_JOB_PAYLOAD_TOO_LARGE');
      expect(problemOf(over).detail).toContain(String(256 * KIB));
    });

    it('answers 413 JOBLINE_PAYLOAD_TOO_LARGE for a body over the body limit', async () => {
      const response = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', payload: 'x'.repeat(1024 * KIB + 1) });
      expect(response.statusCode).toBe(413);
      expect(problemOf(response).code).toBe('JOBLINE_PAYLOAD_TOO_LARGE');
    });

    it('answers 409 JOBLINE_IDEMPOTENCY_CONFLICT when the Idempotency-Key header and idempotencyKey differ, creating nothing', async () => {
      const conflict = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', idempotencyKey: 'order-1' }, { 'idempotency-key': 'order-2' });
      expect(conflict.statusCode).toBe(409);
      expect(problemOf(conflict).code).toBe('JOBLINE_IDEMPOTENCY_CONFLICT');
      // Neither key was used: each now creates its job.
      const first = await request(user.token, 'POST', '/v1/jobs', { type: 'echo' }, { 'idempotency-key': 'order-2' });
      expect(first.statusCode).toBe(201);
      const second = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', idempotencyKey: 'order-1' }, { 'idempotency-key': 'order-1' });
      expect(second.statusCode).toBe(201);
      const again = await request(user.token, 'POST', '/v1/jobs', { type: 'echo', idempotencyKey: 'order-1' });
      expect(again.statusCode).toBe(200);
      expect(again.json<Job>().id).toBe(second.json<Job>().id);
    });

    it('answers 401 without a token or with a bad one', async () => {
      const missing = await request(undefined, 'POST', '/v1/jobs', { type: 'echo' });
      expect(missing.statusCode).toBe(401);
      expect(problemOf(missing).code).toBe('JOBLINE_UNAUTHENTICATED');
      const bad = await request('not-a-token', 'POST', '/v1/jobs', { type: 'echo' });
      expect(bad.statusCode).toBe(401);
    });
  });

  describe('API key scopes', () => {
    let owner: Session;
    let readKey: string;
    let writeKey: string;
    let existing: Job;

    beforeAll(async () => {
      owner = await newUser('scoped');
      const createKey = async (scopes: string[]) => {
        const response = await request(owner.token, 'POST', '/v1/api-keys', { name: scopes.join(' '), scopes });
        expect(response.statusCode, response.body).toBe(201);
        return response.json<{ key: string }>().key;
      };
      readKey = await createKey(['jobs:read']);
      writeKey = await createKey(['jobs:write']);
      existing = await submit(owner, { type: 'echo' });
    });

    it('lets a jobs:read key list and read jobs, and nothing more', async () => {
      const listed = await request(readKey, 'GET', '/v1/jobs');
      expect(listed.statusCode).toBe(200);
      expect(ids(listed.json<Page>().items)).toContain(existing.id);
      expect((await request(readKey, 'GET', `/v1/jobs/${existing.id}`)).statusCode).toBe(200);
      expect((await request(readKey, 'GET', `/v1/jobs/${existing.id}/events`)).statusCode).toBe(200);

      const writes: [string, string, unknown][] = [
        ['POST', '/v1/jobs', { type: 'echo' }],
        ['POST', '/v1/jobs/bulk', { jobs: [{ type: 'echo' }] }],
        ['POST', `/v1/jobs/${existing.id}/cancel`, undefined],
        ['POST', `/v1/jobs/${existing.id}/retry`, undefined],
        ['DELETE', `/v1/jobs/${existing.id}`, undefined],
      ];
      for (const [method, url, body] of writes) {
        const response = await request(readKey, method as 'POST' | 'DELETE', url, body);
        expect(response.statusCode, `${method} ${url}`).toBe(403);
        expect(problemOf(response).code).toBe('JOBLINE_INSUFFICIENT_SCOPE');
        expect(response.json<{ requiredScope: string }>().requiredScope).toBe('jobs:write');
      }
      expect(ids(await listAll(owner))).toHaveLength(1);
    });

    it('lets a jobs:write key submit jobs owned by the key’s user', async () => {
      const response = await request(writeKey, 'POST', '/v1/jobs', { type: 'echo', tags: ['from-key'] });
      expect(response.statusCode).toBe(201);
      const job = response.json<Job>();
      expect(job.ownerId).toBe(owner.userId);
      expect(ids(await listAll(owner, 'tag=from-key'))).toEqual([job.id]);
    });
  });

  describe('POST /v1/jobs/bulk', () => {
    let user: Session;
    beforeAll(async () => {
      user = await newUser('bulker');
    });

    const bulk = (jobs: unknown[]) => request(user.token, 'POST', '/v1/jobs/bulk', { jobs });

    it('answers 201 with every job, in the order submitted', async () => {
      const response = await bulk([
        { type: 'echo', payload: { n: 0 } },
        { type: 'ordered', payload: { name: 'bulk' } },
        { type: 'echo', payload: { n: 2 }, priority: 9, queue: 'bulk-q', tags: ['x'] },
        { type: 'echo', payload: { n: 3 }, delay: 60_000 },
      ]);
      expect(response.statusCode).toBe(201);
      const { jobs } = response.json<{ jobs: Job[] }>();
      expect(jobs.map((job) => [job.type, job.queue, job.state, job.payload])).toEqual([
        ['echo', 'default', 'queued', { n: 0 }],
        ['ordered', 'ordered', 'queued', { name: 'bulk' }],
        ['echo', 'bulk-q', 'queued', { n: 2 }],
        ['echo', 'default', 'scheduled', { n: 3 }],
      ]);
      expect(jobs[2]).toMatchObject({ priority: 9, tags: ['x'], maxAttempts: 3, ownerId: user.userId });
      expect(new Set(ids(jobs)).size).toBe(4);
      for (const job of jobs) expect((await request(user.token, 'GET', `/v1/jobs/${job.id}`)).statusCode).toBe(200);
    });

    it('creates nothing when one job among valid ones is invalid, naming the job', async () => {
      const before = (await listAll(user)).length;
      const valid = { type: 'echo', payload: { ok: true } };

      const badField = await bulk([valid, valid, { type: 'echo', priority: 5000 }, valid]);
      expect(badField.statusCode).toBe(400);
      expect(problemOf(badField).code).toBe('JOBLINE_VALIDATION_FAILED');
      expect(problemOf(badField).errors?.map((error) => error.path)).toEqual(['body.jobs.2.priority']);
      expect(problemOf(badField).detail).toContain('jobs.2.priority');

      const both = await bulk([valid, valid, valid, { type: 'echo', delay: 5, runAt: '2099-01-01T00:00:00Z' }]);
      expect(both.statusCode).toBe(400);
      expect(problemOf(both).errors?.map((error) => error.path)).toEqual(['body.jobs.3.runAt']);

      const unknownType = await bulk([valid, valid, valid, { type: 'no-such-type' }]);
      expect(unknownType.statusCode).toBe(400);
      expect(problemOf(unknownType).detail).toMatch(/^jobs\[3\]: /);
      expect(unknownType.json<{ index: number }>().index).toBe(3);

      const tooBig = await bulk([valid, { type: 'echo', payload: 'x'.repeat(256 * KIB) }, valid]);
      expect(tooBig.statusCode).toBe(413);
      expect(problemOf(tooBig).code).toBe('JOBLINE_JOB_PAYLOAD_TOO_LARGE');
      expect(problemOf(tooBig).detail).toMatch(/^jobs\[1\]: /);
      expect(tooBig.json<{ index: number }>().index).toBe(1);

      expect((await listAll(user)).length).toBe(before);
    });

    it('answers 400 JOBLINE_UNKNOWN_JOB_TYPE naming the index of an unknown type, creating nothing', async () => {
      const before = (await listAll(user)).length;
      const response = await bulk([{ type: 'echo' }, { type: 'echo' }, { type: 'nope' }]);
      expect(response.statusCode).toBe(400);
      expect(problemOf(response).code).toBe('JOBLINE_UNKNOWN_JOB_TYPE');
      expect(problemOf(response).detail).toMatch(/^jobs\[2\]: .*'nope'/);
      expect(response.json<{ index: number }>().index).toBe(2);
      expect((await listAll(user)).length).toBe(before);
    });

    it('answers 400 for no jobs, an empty list and more than 1000 jobs', async () => {
      const before = (await listAll(user)).length;
      const missing = await request(user.token, 'POST', '/v1/jobs/bulk', {});
      expect(missing.statusCode).toBe(400);
      expect(problemOf(missing).errors?.map((error) => error.path)).toContain('body.jobs');
      const empty = await bulk([]);
      expect(empty.statusCode).toBe(400);
      expect(problemOf(empty).errors?.map((error) => error.path)).toContain('body.jobs');
      const tooMany = await bulk(Array.from({ length: 1001 }, () => ({ type: 'echo' })));
      expect(tooMany.statusCode).toBe(400);
      expect(problemOf(tooMany).code).toBe('JOBLINE_VALIDATION_FAILED');
      expect(problemOf(tooMany).errors?.map((error) => error.path)).toContain('body.jobs');
      expect((await listAll(user)).length).toBe(before);
    });

    it('takes 1000 jobs at once', async () => {
      await pauseQueue('bulk-thousand');
      const thousand = await newUser('thousand');
      const response = await request(thousand.token, 'POST', '/v1/jobs/bulk', {
        jobs: Array.from({ length: 1000 }, (_, i) => ({ type: 'echo', queue: 'bulk-thousand', payload: { i } })),
      });
      expect(response.statusCode).toBe(201);
      const { jobs } = response.json<{ jobs: Job[] }>();
      expect(jobs.map((job) => job.payload)).toEqual(Array.from({ length: 1000 }, (_, i) => ({ i })));
      expect(new Set(ids(jobs)).size).toBe(1000);
      const listed = await listAll(thousand);
      expect(listed).toHaveLength(1000);
      // Newest first: the last of the bulk comes first.
      expect(ids(listed)).toEqual(ids(jobs).reverse());
    });
  });

  describe('GET /v1/jobs', () => {
    it('lists newest first; a user sees only their own jobs, an admin everyone’s', async () => {
      const carol = await newUser('carol');
      const dave = await newUser('dave');
      const c1 = await submit(carol, { type: 'echo', queue: 'visibility' });
      const d1 = await submit(dave, { type: 'echo', queue: 'visibility' });
      const c2 = await submit(carol, { type: 'echo', queue: 'visibility' });
      const c3 = await submit(carol, { type: 'echo', queue: 'visibility' });

      expect(ids((await list(carol)).items)).toEqual([c3.id, c2.id, c1.id]);
      expect(ids((await list(dave)).items)).toEqual([d1.id]);
      // Filters never widen what a user sees.
      expect(ids((await list(dave, 'queue=visibility')).items)).toEqual([d1.id]);
      expect(ids((await list(admin, 'queue=visibility')).items)).toEqual([c3.id, c2.id, d1.id, c1.id]);
    });

    describe('filters', () => {
      let user: Session;
      type Kind = 'queued' | 'scheduled' | 'completed' | 'cancelled' | 'failed';
      const jobs = {} as Record<Kind, Job>;

      beforeAll(async () => {
        user = await newUser('filterer');
        await pauseQueue('filter-held');
        // A few ms apart, so each has its own creation time.
        jobs.queued = await submit(user, { type: 'echo', queue: 'filter-held', tags: ['red'] });
        await sleepMs(5);
        jobs.scheduled = await submit(user, { type: 'echo', delay: 600_000, tags: ['blue'] });
        await sleepMs(5);
        jobs.completed = await submit(user, { type: 'echo', tags: ['red', 'blue'] });
        await sleepMs(5);
        jobs.cancelled = await submit(user, { type: 'echo', queue: 'filter-held' });
        await sleepMs(5);
        jobs.failed = await submit(user, { type: 'flaky', attempts: 1 });
        expect((await user.client.post(`/v1/jobs/${jobs.cancelled.id}/cancel`)).statusCode).toBe(200);
        expect((await user.client.waitFor(jobs.completed.id)).state).toBe('completed');
        expect((await user.client.waitFor(jobs.failed.id)).state).toBe('failed');
      });

      const listed = async (query: string) => ids((await list(user, query)).items);
      const between = (a: Job, b: Job) => new Date(Math.floor((Date.parse(a.createdAt) + Date.parse(b.createdAt)) / 2)).toISOString();

      it('by one state, or several comma-separated', async () => {
        expect(await listed('state=queued')).toEqual([jobs.queued.id]);
        expect(await listed('state=scheduled')).toEqual([jobs.scheduled.id]);
        expect(await listed('state=completed')).toEqual([jobs.completed.id]);
        expect(await listed('state=failed')).toEqual([jobs.failed.id]);
        expect(await listed('state=cancelled')).toEqual([jobs.cancelled.id]);
        expect(await listed('state=active')).toEqual([]);
        expect(await listed('state=queued,scheduled')).toEqual([jobs.scheduled.id, jobs.queued.id]);
        expect(await listed(`state=${encodeURIComponent('completed,failed,cancelled')}`)).toEqual([jobs.failed.id, jobs.cancelled.id, jobs.completed.id]);
      });

      it('by queue, type and tag, and several at once', async () => {
        expect(await listed('queue=filter-held')).toEqual([jobs.cancelled.id, jobs.queued.id]);
        expect(await listed('queue=nowhere')).toEqual([]);
        expect(await listed('type=flaky')).toEqual([jobs.failed.id]);
        expect(await listed('tag=red')).toEqual([jobs.completed.id, jobs.queued.id]);
        expect(await listed('tag=blue')).toEqual([jobs.completed.id, jobs.scheduled.id]);
        expect(await listed('tag=re')).toEqual([]);
        expect(await listed('queue=filter-held&state=queued')).toEqual([jobs.queued.id]);
        expect(await listed('type=echo&tag=blue&state=completed')).toEqual([jobs.completed.id]);
      });

      it('by creation time', async () => {
        const afterFirst = between(jobs.queued, jobs.scheduled);
        const beforeLast = between(jobs.cancelled, jobs.failed);
        expect(await listed(`createdAfter=${afterFirst}`)).toEqual([jobs.failed.id, jobs.cancelled.id, jobs.completed.id, jobs.scheduled.id]);
        expect(await listed(`createdBefore=${beforeLast}`)).toEqual([jobs.cancelled.id, jobs.completed.id, jobs.scheduled.id, jobs.queued.id]);
        expect(await listed(`createdAfter=${afterFirst}&createdBefore=${beforeLast}`)).toEqual([jobs.cancelled.id, jobs.completed.id, jobs.scheduled.id]);
        expect(await listed('createdAfter=2099-01-01T00:00:00Z')).toEqual([]);
      });

      it('answers 400 for a bad state, time or limit', async () => {
        for (const query of ['state=done', 'state=queued,bogus', 'state=', 'createdAfter=yesterday', 'createdBefore=2030-01-01', 'limit=0', 'limit=201', 'limit=ten']) {
          const response = await request(user.token, 'GET', `/v1/jobs?${query}`);
          expect(response.statusCode, query).toBe(400);
          expect(problemOf(response).code, query).toBe('JOBLINE_VALIDATION_FAILED');
        }
        const badState = await request(user.token, 'GET', '/v1/jobs?state=done');
        expect(problemOf(badState).errors?.[0]?.path).toMatch(/^querystring\.state/);
      });

      it('matches a tag exactly, case included', async () => {
        expect(await listed('tag=RED')).toEqual([]);
      });

      it('does not match a piece of a tag that contains quotes', async () => {
        const quoter = await newUser('quoter');
        const odd = await submit(quoter, { type: 'echo', tags: ['a","b'] });
        expect(ids((await list(quoter, `tag=${encodeURIComponent('a","b')}`)).items)).toEqual([odd.id]);
        expect(ids((await list(quoter, 'tag=b')).items)).toEqual([]);
      });
    });

    it('pages with limit and an opaque cursor, visiting every job once, unaffected by jobs submitted meanwhile', async () => {
      const pager = await newUser('pager');
      const original: Job[] = [];
      for (let i = 0; i < 7; i += 1) original.push(await submit(pager, { type: 'echo', payload: { i } }));

      const seen: string[] = [];
      const submittedMeanwhile: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const query: string = cursor === null ? 'limit=3' : `limit=3&cursor=${encodeURIComponent(cursor)}`;
        const page = await list(pager, query);
        expect(page.items.length).toBeLessThanOrEqual(3);
        seen.push(...ids(page.items));
        cursor = page.nextCursor;
        pages += 1;
        // Newer jobs arrive between pages: they belong before the first page, never on a later one.
        submittedMeanwhile.push((await submit(pager, { type: 'echo', payload: { late: pages } })).id);
        submittedMeanwhile.push((await submit(pager, { type: 'echo', payload: { late: pages } })).id);
      } while (cursor !== null && pages < 10);

      expect(seen).toEqual(ids(original).reverse());
      expect(pages).toBe(3);
      expect(seen.filter((id) => submittedMeanwhile.includes(id))).toEqual([]);
      // A fresh listing starts with the newer jobs.
      expect(ids(await listAll(pager))).toEqual([...submittedMeanwhile].reverse().concat(ids(original).reverse()));
    });

    it('answers 400 JOBLINE_INVALID_CURSOR for a tampered cursor or one from another listing', async () => {
      const user = await newUser('cursor');
      for (let i = 0; i < 3; i += 1) await submit(user, { type: 'echo' });
      const cursor = (await list(user, 'limit=1')).nextCursor;
      expect(cursor).toEqual(expect.any(String));
      const usersCursor = (await request(admin.token, 'GET', '/v1/users?limit=1')).json<{ nextCursor: string | null }>().nextCursor;
      expect(usersCursor).toEqual(expect.any(String));

      const tampered = [
        'garbage',
        String(cursor).slice(0, Math.floor(String(cursor).length / 2)),
        String(usersCursor),
        Buffer.from(JSON.stringify(['jobs', 'yesterday', 'some-id'])).toString('base64url'),
        Buffer.from(JSON.stringify(['jobs', 1_700_000_000_000])).toString('base64url'),
        Buffer.from(JSON.stringify({ createdAt: 1, id: 'x' })).toString('base64url'),
      ];
      for (const bad of tampered) {
        const response = await request(user.token, 'GET', `/v1/jobs?limit=1&cursor=${encodeURIComponent(bad)}`);
        expect(response.statusCode, bad).toBe(400);
        expect(problemOf(response).code, bad).toBe('JOBLINE_INVALID_CURSOR');
      }
    });
  });

  describe('one job', () => {
    let alice: Session;
    let bob: Session;
    let completed: Job;
    let failed: Job;
    let queued: Job;

    beforeAll(async () => {
      alice = await newUser('alice');
      bob = await newUser('bob');
      await pauseQueue('alice-held');
      completed = await submit(alice, { type: 'chatty', payload: { count: 10 } });
      failed = await submit(alice, { type: 'flaky', attempts: 1 });
      queued = await submit(alice, { type: 'echo', queue: 'alice-held' });
      expect((await alice.client.waitFor(completed.id)).state).toBe('completed');
      expect((await alice.client.waitFor(failed.id)).state).toBe('failed');
    });

    const expectNotFound = (response: LightMyRequestResponse) => {
      expect(response.statusCode).toBe(404);
      expect(problemOf(response).code).toBe('JOBLINE_JOB_NOT_FOUND');
    };

    it('is 404 JOBLINE_JOB_NOT_FOUND for another user, exactly as for a job that does not exist; an admin reads it', async () => {
      const hidden = await request(bob.token, 'GET', `/v1/jobs/${completed.id}`);
      expectNotFound(hidden);
      const absent = await request(bob.token, 'GET', '/v1/jobs/01900000-0000-7000-8000-000000000000');
      expectNotFound(absent);
      expect(problemOf(hidden).detail).toBe(problemOf(absent).detail);

      const asAdmin = await request(admin.token, 'GET', `/v1/jobs/${completed.id}`);
      expect(asAdmin.statusCode).toBe(200);
      expect(asAdmin.json<Job>()).toMatchObject({ id: completed.id, ownerId: alice.userId, state: 'completed' });
    });

    it('answers 400 for an id that is not a UUID, on every job route', async () => {
      const calls: ['GET' | 'POST' | 'DELETE', string][] = [
        ['GET', '/v1/jobs/not-a-uuid'],
        ['GET', '/v1/jobs/not-a-uuid/events'],
        ['POST', '/v1/jobs/not-a-uuid/cancel'],
        ['POST', '/v1/jobs/not-a-uuid/retry'],
        ['DELETE', '/v1/jobs/not-a-uuid'],
      ];
      for (const [method, url] of calls) {
        const response = await request(alice.token, method, url);
        expect(response.statusCode, `${method} ${url}`).toBe(400);
        expect(problemOf(response).errors?.[0]?.path).toBe('params.id');
      }
    });

    it('GET events?fromSeq=N returns only the events after N, in order', async () => {
      const all = (await request(alice.token, 'GET', `/v1/jobs/${completed.id}/events`)).json<{ items: JobEvent[] }>().items;
      expect(all.map((event) => event.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
      expect(all[0]).toMatchObject({ type: 'job.created', jobId: completed.id, seq: 1, at: expect.stringMatching(ISO_UTC) });
      expect(all.at(-1)?.type).toBe('job.completed');

      for (const fromSeq of [0, 1, 5, all.length - 1, all.length, all.length + 10]) {
        const response = await request(alice.token, 'GET', `/v1/jobs/${completed.id}/events?fromSeq=${fromSeq}`);
        expect(response.statusCode).toBe(200);
        const items = response.json<{ items: JobEvent[] }>().items;
        expect(items, `fromSeq=${fromSeq}`).toEqual(all.filter((event) => event.seq > fromSeq));
      }
      expect((await request(alice.token, 'GET', `/v1/jobs/${completed.id}/events?fromSeq=-1`)).statusCode).toBe(400);
      expect((await request(alice.token, 'GET', `/v1/jobs/${completed.id}/events?fromSeq=two`)).statusCode).toBe(400);
    });

    it('GET events of another user’s job is 404; an admin reads them', async () => {
      expectNotFound(await request(bob.token, 'GET', `/v1/jobs/${completed.id}/events`));
      expectNotFound(await request(bob.token, 'GET', `/v1/jobs/${completed.id}/events?fromSeq=3`));
      expect((await request(admin.token, 'GET', `/v1/jobs/${completed.id}/events`)).statusCode).toBe(200);
    });

    it('cancel and retry of another user’s job are 404 and change nothing', async () => {
      expectNotFound(await request(bob.token, 'POST', `/v1/jobs/${queued.id}/cancel`));
      expectNotFound(await request(bob.token, 'POST', `/v1/jobs/${failed.id}/retry`));
      expectNotFound(await request(bob.token, 'DELETE', `/v1/jobs/${completed.id}`));
      expect((await alice.client.get(queued.id)).state).toBe('queued');
      expect((await alice.client.get(failed.id)).state).toBe('failed');
      expect((await alice.client.get(completed.id)).state).toBe('completed');
    });

    it('DELETE of an unfinished job is 409 JOBLINE_JOB_STATE_CONFLICT and keeps it', async () => {
      const response = await request(alice.token, 'DELETE', `/v1/jobs/${queued.id}`);
      expect(response.statusCode).toBe(409);
      expect(problemOf(response).code).toBe('JOBLINE_JOB_STATE_CONFLICT');
      expect((await alice.client.get(queued.id)).state).toBe('queued');

      const scheduled = await submit(alice, { type: 'echo', delay: 600_000 });
      expect((await request(alice.token, 'DELETE', `/v1/jobs/${scheduled.id}`)).statusCode).toBe(409);
    });

    it('DELETE of a finished job is 204; the job and its events are gone', async () => {
      const response = await request(alice.token, 'DELETE', `/v1/jobs/${completed.id}`);
      expect(response.statusCode).toBe(204);
      expect(response.body).toBe('');
      expectNotFound(await request(alice.token, 'GET', `/v1/jobs/${completed.id}`));
      expectNotFound(await request(alice.token, 'GET', `/v1/jobs/${completed.id}/events`));
      expect(ids(await listAll(alice))).not.toContain(completed.id);
      const events = await server.runtime.database.db.selectFrom('job_events').select('seq').where('job_id', '=', completed.id).execute();
      expect(events).toEqual([]);
      // Deleting again: it no longer exists.
      expectNotFound(await request(alice.token, 'DELETE', `/v1/jobs/${completed.id}`));

      expect((await request(alice.token, 'DELETE', `/v1/jobs/${failed.id}`)).statusCode).toBe(204);
    });

    it('answers 401 without a token on every job route', async () => {
      const calls: ['GET' | 'POST' | 'DELETE', string, unknown][] = [
        ['GET', '/v1/jobs', undefined],
        ['POST', '/v1/jobs/bulk', { jobs: [{ type: 'echo' }] }],
        ['GET', `/v1/jobs/${queued.id}`, undefined],
        ['GET', `/v1/jobs/${queued.id}/events`, undefined],
        ['POST', `/v1/jobs/${queued.id}/cancel`, undefined],
        ['POST', `/v1/jobs/${queued.id}/retry`, undefined],
        ['DELETE', `/v1/jobs/${queued.id}`, undefined],
      ];
      for (const [method, url, body] of calls) {
        const response = await request(undefined, method, url, body);
        expect(response.statusCode, `${method} ${url}`).toBe(401);
        expect(problemOf(response).code).toBe('JOBLINE_UNAUTHENTICATED');
      }
      expect((await alice.client.get(queued.id)).state).toBe('queued');
    });
  });
});

describe('JOBLINE_MAX_PAYLOAD', () => {
  let server: TestRuntime;
  let token: string;

  beforeAll(async () => {
    server = await startTestRuntime({ handlers: registerProbeHandlers, env: { JOBLINE_MAX_PAYLOAD: '2048' } });
    token = (await server.login()).accessToken;
  });
  afterAll(async () => server.close());

  it('caps each job’s payload at the configured size, in single and bulk submissions', async () => {
    const submit = (url: string, body: unknown) => server.request({ method: 'POST', url, token, body });
    expect((await submit('/v1/jobs', { type: 'echo', payload: 'x'.repeat(2046) })).statusCode).toBe(201);
    const over = await submit('/v1/jobs', { type: 'echo', payload: 'x'.repeat(2047) });
    expect(over.statusCode).toBe(413);
    expect(problemOf(over).code).toBe('JOBLINE_JOB_PAYLOAD_TOO_LARGE');
    expect(problemOf(over).detail).toContain('2048');
    // Multi-byte characters count as the bytes they take: 700 × 3 bytes.
    expect((await submit('/v1/jobs', { type: 'echo', payload: { text: '€'.repeat(700) } })).statusCode).toBe(413);

    const bulk = await submit('/v1/jobs/bulk', { jobs: [{ type: 'echo', payload: 'small' }, { type: 'echo', payload: 'x'.repeat(3000) }] });
    expect(bulk.statusCode).toBe(413);
    expect(problemOf(bulk).detail).toMatch(/^jobs\[1\]: /);
  });
});

describe('job metrics', () => {
  let server: TestRuntime;
  let client: Client;

  beforeAll(async () => {
    server = await startTestRuntime({ handlers: registerProbeHandlers });
    client = new Client(server, (await server.login()).accessToken);
  });
  afterAll(async () => server.close());

  const scrape = async () => {
    const response = await server.request({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    expect(String(response.headers['content-type'])).toMatch(/^text\/plain/);
    return response.body;
  };
  /** The value of one sample line (`name{labels} value`), or undefined. */
  const sample = (text: string, series: string): number | undefined => {
    const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  it('counts completed jobs by queue and type, with durations, waits and jobs by state', async () => {
    const jobs = [
      await client.submit({ type: 'echo' }),
      await client.submit({ type: 'echo' }),
      await client.submit({ type: 'echo' }),
      await client.submit({ type: 'echo', queue: 'metrics-other' }),
    ];
    for (const job of jobs) expect((await client.waitFor(job.id)).state).toBe('completed');

    // A worker counts a completion just after storing it: poll until the scrape shows them all.
    const counted = (text: string) =>
      sample(text, 'jobline_jobs_completed_total{queue="default",type="echo"}') === 3 &&
      sample(text, 'jobline_jobs_completed_total{queue="metrics-other",type="echo"}') === 1;
    let text = await scrape();
    for (const deadline = Date.now() + 15_000; !counted(text) && Date.now() < deadline; text = await scrape()) await sleepMs(10);
    expect(sample(text, 'jobline_jobs_completed_total{queue="default",type="echo"}')).toBe(3);
    expect(sample(text, 'jobline_jobs_completed_total{queue="metrics-other",type="echo"}')).toBe(1);
    expect(text).toContain('# TYPE jobline_job_duration_seconds histogram');
    expect(sample(text, 'jobline_job_duration_seconds_count{queue="default",type="echo"}')).toBe(3);
    expect(text).toMatch(/^jobline_job_duration_seconds_bucket\{le="[^"]+",queue="default",type="echo"\} \d+$/m);
    expect(text).toContain('# TYPE jobline_job_wait_seconds histogram');
    expect(sample(text, 'jobline_job_wait_seconds_count{queue="default",type="echo"}')).toBe(3);
    expect(sample(text, 'jobline_jobs{queue="default",state="completed"}')).toBe(3);
    expect(sample(text, 'jobline_jobs{queue="default",state="queued"}')).toBe(0);
    expect(sample(text, 'jobline_jobs{queue="metrics-other",state="completed"}')).toBe(1);
  });
});
