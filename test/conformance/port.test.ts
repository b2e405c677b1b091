import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine, JobEvent } from '../../src/engine/types.js';
import type { AppError } from '../../src/utils/errors.js';
import type { TestRuntime } from '../helpers/runtime.js';
import { newJob, targets } from './harness.js';

/**
 * The engine port called directly, on every engine: the policies both engines share (dedup
 * order, fencing, what may be deleted or retried, listener fan-out) behave the same.
 */
describe.each(targets)('the engine port on the $name engine', (target) => {
  let server: TestRuntime;
  let engine: Engine;
  let ownerId: string;
  let queues = 0;
  beforeAll(async () => {
    server = await target.start();
    engine = server.runtime.engine;
    ownerId = (await server.login()).userId;
  });
  afterAll(async () => {
    await server.close();
  });

  /** A job on a queue of its own test (no consumer watches it). */
  const setUp = () => {
    const queue = `port-${(queues += 1)}`;
    const job = (overrides: Parameters<typeof newJob>[1] = {}) => newJob(ownerId, { queue, maxAttempts: 1, ...overrides });
    const claim = async () => {
      const [claimed] = await engine.claimJobs({ queue, types: ['unhandled'], limit: 1, workerId: 'w', leaseMs: 10_000 });
      expect(claimed).toBeDefined();
      return { jobId: claimed!.job.id, token: claimed!.token };
    };
    return { queue, job, claim };
  };
  const refusal = (promise: Promise<unknown>) => promise.then(() => null, (error: unknown) => error as AppError);

  it('deduplicates a batch against stored jobs and within itself, saying by which key', async () => {
    const { job } = setUp();
    const [stored] = await engine.addJobs([job({ idempotencyKey: 'port-idem' })]);
    const added = await engine.addJobs([
      job({ idempotencyKey: 'port-idem', singletonKey: 'port-single' }),
      job({ singletonKey: 'port-single' }),
      job({ singletonKey: 'port-single', idempotencyKey: 'port-other' }),
      job({ idempotencyKey: 'port-other' }),
    ]);
    expect(added.map((result) => [result.created, result.deduplicatedBy ?? null])).toEqual([
      [false, 'idempotencyKey'],
      [true, null],
      [false, 'singletonKey'],
      [true, null],
    ]);
    expect(added[0]!.job.id).toBe(stored!.job.id);
    expect(added[2]!.job.id).toBe(added[1]!.job.id);
  });

  it('fences completions, failures, events and releases of a lease that was lost', async () => {
    const { job, claim } = setUp();
    const [added] = await engine.addJobs([job()]);
    const lease = await claim();
    const stale = { jobId: lease.jobId, token: 'not-the-lease' };
    expect(await engine.completeJob(stale, 'x')).toEqual({ accepted: false, reason: 'lease_lost' });
    expect(await engine.failJob(stale, { error: { message: 'x' }, nonRetriable: true, retryAfterMs: null })).toEqual({ accepted: false, reason: 'lease_lost' });
    expect(await engine.appendEvents(stale, [{ type: 'job.log', data: { message: 'x' } }])).toBe(false);
    await engine.releaseJobs([stale]);
    expect(await engine.getJob(added!.job.id)).toMatchObject({ state: 'active', lastSeq: 2 });
    expect(await engine.renewLeases([stale, lease], 10_000)).toEqual([stale.jobId]);
    expect(await engine.completeJob(lease, 'done')).toMatchObject({ accepted: true, job: { state: 'completed', result: 'done', lastSeq: 3 } });
    expect(await engine.completeJob(lease, 'again')).toEqual({ accepted: false, reason: 'lease_lost' });
  });

  it('deletes only finished jobs, with their events', async () => {
    const { job, claim } = setUp();
    const [added] = await engine.addJobs([job()]);
    expect(await refusal(engine.deleteJob(added!.job.id))).toMatchObject({ code: 'JOBLINE_JOB_STATE_CONFLICT', status: 409 });
    await engine.completeJob(await claim(), null);
    await engine.deleteJob(added!.job.id);
    expect(await engine.getJob(added!.job.id)).toBeNull();
    expect(await engine.listEvents(added!.job.id, 0, 10)).toEqual([]);
    expect(await refusal(engine.deleteJob(added!.job.id))).toMatchObject({ code: 'JOBLINE_JOB_NOT_FOUND' });
  });

  it('refuses a retry while a live job holds the singleton key, naming it, and announces nothing for it', async () => {
    const { queue, job, claim } = setUp();
    const announced: JobEvent[] = [];
    const unsubscribe = engine.subscribe({ events: (events) => announced.push(...events) });
    try {
      // A fails; B then holds the singleton key, so A cannot go back to the queue.
      const [a] = await engine.addJobs([job({ singletonKey: 'port-k' })]);
      await engine.failJob(await claim(), { error: { message: 'no' }, nonRetriable: true, retryAfterMs: null });
      const [b] = await engine.addJobs([job({ singletonKey: 'port-k' })]);
      expect(b!.created).toBe(true);
      announced.length = 0;
      expect(await engine.retryFailed(queue)).toBe(0);
      const refused = await refusal(engine.retryJob(a!.job.id));
      expect(refused).toMatchObject({ code: 'JOBLINE_SINGLETON_CONFLICT', status: 409, extensions: { jobId: b!.job.id } });
      expect(announced.filter((event) => event.jobId === a!.job.id)).toEqual([]);
      expect(await engine.getJob(a!.job.id)).toMatchObject({ state: 'failed', lastSeq: 3 });
    } finally {
      unsubscribe();
    }
  });

  it('refuses a retry of a job that is not failed or cancelled', async () => {
    const { job } = setUp();
    const [added] = await engine.addJobs([job()]);
    expect(await refusal(engine.retryJob(added!.job.id))).toMatchObject({ code: 'JOBLINE_JOB_STATE_CONFLICT' });
    expect(await refusal(engine.cancelJob('01900000-0000-7000-8000-000000000000'))).toMatchObject({ code: 'JOBLINE_JOB_NOT_FOUND' });
  });

  it('keeps telling the other listeners when one throws, and commits each write once', async () => {
    const { job, claim } = setUp();
    const heard: string[] = [];
    const unsubscribe = [
      engine.subscribe({
        events: () => {
          throw new Error('a broken listener');
        },
      }),
      engine.subscribe({ events: (events) => heard.push(...events.map((event) => `${event.seq}:${event.type}`)) }),
    ];
    try {
      const [added] = await engine.addJobs([job()]);
      const lease = await claim();
      expect(await engine.appendEvents(lease, [{ type: 'job.delta', data: { chunk: 'a' } }, { type: 'job.delta', data: { chunk: 'b' } }])).toBe(true);
      expect((await engine.completeJob(lease, 'done')).accepted).toBe(true);
      const expected = ['1:job.created', '2:job.active', '3:job.delta', '4:job.delta', '5:job.completed'];
      expect((await engine.listEvents(added!.job.id, 0, 100)).map((event) => `${event.seq}:${event.type}`)).toEqual(expected);
      expect(heard).toEqual(expected);
      expect(server.logText()).toContain('an engine listener failed');
    } finally {
      for (const stop of unsubscribe) stop();
    }
  });
});
