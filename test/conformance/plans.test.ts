import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  planAppend,
  planClaim,
  planCompletion,
  planExpire,
  planFailure,
  planFinish,
  planInsert,
  planManualRetry,
  planRecoverCrash,
  planRelease,
  planSubmissions,
  TransitionError,
  type Plan,
} from '../../src/engine/changes.js';
import { ERROR_CODES } from '../../src/engine/lifecycle.js';
import type { JobRow } from '../../src/engine/rows.js';
import { isSingletonRefusal } from '../../src/engine/storageErrors.js';
import { newId } from '../../src/utils/ids.js';
import { newJob } from './harness.js';
import { stores, type StoreUnderTest } from './stores.js';

/**
 * Every transition plan applied to both stores (SQLite by the embedded engine's store, PostgreSQL
 * by the BullMQ engine's): what is stored afterwards is the plan's row and its event rows, to the
 * column, with seq running on from the row's last one without a gap.
 */
describe.each(stores)('transition plans applied to $name', ({ open }) => {
  let store: StoreUnderTest;
  beforeAll(async () => {
    store = await open();
  });
  afterAll(async () => {
    await store.close();
  });

  const lease = { token: 'w1.token', workerId: 'w1', leaseMs: 30_000 };
  const now = () => Date.now();

  /** Applies a plan and checks the store now holds exactly its row and, after the events already there, its event rows. */
  async function applyAndCheck(plan: Plan, options: { activations?: boolean } = {}) {
    const before = await store.events(plan.row.id);
    const after = await store.apply([plan], options);
    expect(await store.row(plan.row.id)).toEqual(plan.row);
    const events = await store.events(plan.row.id);
    expect(events).toEqual([...before, ...plan.eventRows]);
    // Gap-free seq: the stored runs (a delta run spans seq..seq_end) cover 1..last_seq exactly once.
    const covered = events.flatMap((event) => Array.from({ length: (event.seq_end ?? event.seq) - event.seq + 1 }, (_, i) => event.seq + i));
    expect(covered).toEqual(Array.from({ length: plan.row.last_seq }, (_, i) => i + 1));
    return { row: plan.row, after };
  }

  async function inserted(overrides: Parameters<typeof newJob>[1] = {}) {
    return (await applyAndCheck(planInsert(newId(), newJob('owner', overrides), now()))).row;
  }

  async function active(overrides: Parameters<typeof newJob>[1] = {}) {
    const { plan, claim } = planClaim(await inserted(overrides), lease, now());
    expect(claim).not.toBeNull();
    return (await applyAndCheck(plan)).row;
  }

  it('insert: a queued job with its tags and job.created, runnable at once', async () => {
    const plan = planInsert(newId(), newJob('owner', { tags: ['b', 'a', 'b'] }), now());
    const { after } = await applyAndCheck(plan);
    expect(plan.row).toMatchObject({ state: 'queued', last_seq: 1, attempts_made: 0 });
    expect(await store.tags(plan.row.id)).toEqual(['a', 'b']);
    expect([...after.available]).toEqual(['manual']);
    expect(after.runnable.map((row) => row.id)).toEqual([plan.row.id]);
  });

  it('insert: a delayed job is scheduled, runnable at its time, no queue woken', async () => {
    const plan = planInsert(newId(), newJob('owner', { delayMs: 60_000 }), now());
    const { after } = await applyAndCheck(plan);
    expect(plan.row.state).toBe('scheduled');
    expect(after.available.size).toBe(0);
    expect(after.runnable).toHaveLength(1);
  });

  it('claim: active under the lease, attempt counted, job.active', async () => {
    const { plan, claim } = planClaim(await inserted(), lease, now());
    await applyAndCheck(plan);
    expect(plan.row).toMatchObject({ state: 'active', attempts_made: 1, lease_token: lease.token, worker_id: 'w1', last_seq: 2 });
    expect(claim).toMatchObject({ token: lease.token, attempt: 1, job: { state: 'active', attemptsMade: 1, lastSeq: 2 } });
  });

  it('claim: several activations in one statement store the same rows as one by one', async () => {
    const rows = [await inserted(), await inserted({ priority: 5 }), await inserted()];
    const plans = rows.map((row, index) => planClaim(row, { ...lease, token: `w1.t${index}` }, now()).plan);
    await store.apply(plans, { activations: true });
    for (const plan of plans) {
      expect(await store.row(plan.row.id)).toEqual(plan.row);
      expect((await store.events(plan.row.id)).at(-1)).toEqual(plan.eventRows[0]);
    }
  });

  it('claim: a job whose ttl ran out fails as expired instead', async () => {
    const row = await inserted({ ttlMs: 1 });
    const { plan, claim } = planClaim(row, lease, row.created_at + 10);
    await applyAndCheck(plan);
    expect(claim).toBeNull();
    expect(plan.row.state).toBe('failed');
    expect(JSON.parse(plan.row.error!)).toMatchObject({ code: ERROR_CODES.expired });
  });

  it('expire: a waiting job past its ttl fails with job.failed', async () => {
    const plan = planExpire(await inserted({ delayMs: 60_000 }), now());
    await applyAndCheck(plan);
    expect(plan.row).toMatchObject({ state: 'failed', lease_token: null });
    expect(plan.eventRows.map((event) => event.type)).toEqual(['job.failed']);
  });

  it('complete: the holder of the lease completes it; another token changes nothing', async () => {
    const row = await active();
    expect(planCompletion(row, 'w2.other', 'x', now())).toEqual({ plan: null, outcome: { accepted: false, reason: 'lease_lost' } });
    const { plan, outcome } = planCompletion(row, lease.token, { answer: 42 }, now());
    await applyAndCheck(plan!);
    expect(plan!.row).toMatchObject({ state: 'completed', result: '{"answer":42}', lease_token: null, lease_expires_at: null, last_seq: 3 });
    expect(outcome).toMatchObject({ accepted: true, job: { state: 'completed', result: { answer: 42 } } });
    // The old holder, once finished, is fenced off for good.
    expect(planCompletion(plan!.row, lease.token, 'again', now()).plan).toBeNull();
  });

  it('complete, batched: what the engine writes for completions arriving together is planCompletion, fenced per job', async () => {
    const rows = [await active(), await active()];
    const at = now();
    const expected = rows.map((row, index) => planCompletion(row, lease.token, { index }, at).plan!);
    const outcomes = await store.completeBatch(
      [...rows.map((row, index) => ({ jobId: row.id, token: lease.token, result: { index } })), { jobId: rows[0]!.id, token: 'w2.other', result: null }],
      at,
    );
    expect(outcomes.map((outcome) => outcome.accepted)).toEqual([true, true, false]);
    for (const plan of expected) {
      expect(await store.row(plan.row.id)).toEqual(plan.row);
      expect((await store.events(plan.row.id)).at(-1)).toEqual(plan.eventRows[0]);
    }
  });

  it('fail: with attempts left the job is rescheduled by its backoff, with job.retrying', async () => {
    const row = await active({ maxAttempts: 3, backoff: { type: 'fixed', delay: 5000 } });
    const at = now();
    const { plan } = planFailure(row, lease.token, { error: { message: 'no' }, nonRetriable: false, retryAfterMs: null }, at);
    const { after } = await applyAndCheck(plan!);
    expect(plan!.row).toMatchObject({ state: 'scheduled', run_at: at + 5000, attempts_made: 1, lease_token: null, started_at: null });
    expect(JSON.parse(plan!.eventRows[0]!.data)).toMatchObject({ error: { message: 'no' }, attempt: 1 });
    expect(after.runnable).toHaveLength(1);
  });

  it('fail: with no attempts left, or non-retriable, the job fails', async () => {
    const row = await active({ maxAttempts: 5 });
    const { plan } = planFailure(row, lease.token, { error: { message: 'bad', code: 'BAD' }, nonRetriable: true, retryAfterMs: null }, now());
    await applyAndCheck(plan!);
    expect(plan!.row.state).toBe('failed');
    expect(plan!.eventRows.map((event) => JSON.parse(event.data))).toEqual([{ error: { message: 'bad', code: 'BAD' } }]);
  });

  it('recover a crash: queued again at once, the attempt not used up, the crash counted', async () => {
    const plan = planRecoverCrash(await active(), now(), 3);
    const { after } = await applyAndCheck(plan);
    expect(plan.row).toMatchObject({ state: 'queued', attempts_made: 0, crash_count: 1, lease_token: null });
    expect(JSON.parse(plan.row.error!)).toMatchObject({ code: ERROR_CODES.leaseExpired });
    expect([...after.available]).toEqual(['manual']);
  });

  it('recover a crash: the last allowed crash fails the job', async () => {
    const row = await active();
    const plan = planRecoverCrash({ ...row, crash_count: 2 }, now(), 3);
    await applyAndCheck(plan);
    expect(plan.row.state).toBe('failed');
    expect(JSON.parse(plan.row.error!)).toMatchObject({ code: ERROR_CODES.crashed });
  });

  it('release: handed back at once without using up the attempt; a stale token releases nothing', async () => {
    const row = await active();
    expect(planRelease(row, 'w2.other', now())).toBeNull();
    const plan = planRelease(row, lease.token, now())!;
    await applyAndCheck(plan);
    expect(plan.row).toMatchObject({ state: 'queued', attempts_made: 0, crash_count: 0, error: expect.stringContaining('JOBLINE_RELEASED') });
  });

  it('cancel: a queued job is cancelled; an active one also stops its handler; a finished one refuses', async () => {
    const queued = planFinish(await inserted(), 'cancel', {}, now());
    expect((await applyAndCheck(queued)).after.stopHandlers).toEqual([]);
    const running = planFinish(await active(), 'cancel', {}, now());
    expect((await applyAndCheck(running)).after.stopHandlers).toEqual([running.row.id]);
    expect(() => planFinish(running.row, 'cancel', {}, now())).toThrow(TransitionError);
  });

  it('manual retry: a failed job goes back with fresh attempts and job.retrying marked manual', async () => {
    const failed = planFailure(await active(), lease.token, { error: { message: 'x' }, nonRetriable: true, retryAfterMs: null }, now()).plan!;
    await applyAndCheck(failed);
    const plan = planManualRetry(failed.row, now());
    await applyAndCheck(plan);
    expect(plan.row).toMatchObject({ state: 'queued', attempts_made: 0, crash_count: 0, error: null, result: null, finished_at: null, expires_at: null });
    expect(JSON.parse(plan.eventRows[0]!.data)).toMatchObject({ manual: true, attempt: 0, error: { message: 'x' } });
    expect(() => planManualRetry(plan.row, now())).toThrow(TransitionError);
  });

  it('manual retry: the singleton index refuses it while a live job holds the key', async () => {
    const failed = planFailure(await active({ singletonKey: 'only' }), lease.token, { error: { message: 'x' }, nonRetriable: true, retryAfterMs: null }, now()).plan!;
    await applyAndCheck(failed);
    await inserted({ singletonKey: 'only' });
    const refused = await store.apply([planManualRetry(failed.row, now())]).then(() => null, (error: unknown) => error);
    expect(isSingletonRefusal(refused)).toBe(true);
    expect(await store.row(failed.row.id)).toEqual(failed.row);
  });

  it('handler events: deltas share a row, progress is kept, seq runs on; a stale token appends nothing', async () => {
    const row = await active();
    const events = [
      { type: 'job.delta' as const, data: { chunk: 'a' } },
      { type: 'job.delta' as const, data: { chunk: 'b' } },
      { type: 'job.progress' as const, data: { progress: 50 } },
      { type: 'job.log' as const, data: { message: 'hi' } },
      { type: 'job.delta' as const, data: { chunk: 'c' } },
    ];
    expect(planAppend(row, 'w2.other', events, now())).toBeNull();
    const plan = planAppend(row, lease.token, events, now())!;
    const { after } = await applyAndCheck(plan);
    expect(plan.row).toMatchObject({ last_seq: 7, progress: '50', state: 'active' });
    expect(plan.eventRows.map((event) => [event.seq, event.seq_end, event.type])).toEqual([
      [3, 4, 'job.delta'],
      [5, null, 'job.progress'],
      [6, null, 'job.log'],
      [7, null, 'job.delta'],
    ]);
    expect(after.events.map((event) => event.seq)).toEqual([3, 4, 5, 6, 7]);
    const completed = planCompletion(plan.row, lease.token, null, now()).plan!;
    await applyAndCheck(completed);
    expect(completed.eventRows[0]).toMatchObject({ seq: 8, type: 'job.completed' });
  });

  it('submissions: deduplicated against stored jobs and each other, by fire time, then idempotency key, then singleton key', async () => {
    const scheduleId = newId();
    const stored = [
      await inserted({ idempotencyKey: 'idem' }),
      await inserted({ singletonKey: 'single' }),
      await inserted({ scheduleId, fireAt: 1000 }),
    ];
    const jobs = [
      newJob('owner', { idempotencyKey: 'idem', singletonKey: 'single' }),
      newJob('owner', { scheduleId, fireAt: 1000, idempotencyKey: 'idem' }),
      newJob('other', { idempotencyKey: 'idem' }),
      newJob('other', { idempotencyKey: 'idem' }),
      newJob('owner', { singletonKey: 'fresh' }),
      newJob('owner', { singletonKey: 'fresh', idempotencyKey: 'later' }),
      newJob('owner'),
    ];
    const planned = planSubmissions(jobs, await store.dedupCandidates(jobs), newId, now());
    expect(planned.map((result) => result.deduplicatedBy ?? null)).toEqual([
      'idempotencyKey',
      'fireTime',
      null,
      'idempotencyKey',
      null,
      'singletonKey',
      null,
    ]);
    expect(planned[0]!.row.id).toBe(stored[0]!.id);
    expect(planned[1]!.row.id).toBe(stored[2]!.id);
    expect(planned[3]!.row.id).toBe(planned[2]!.row.id);
    expect(planned[5]!.row.id).toBe(planned[4]!.row.id);
    const created = planned.flatMap((result) => (result.plan ? [result.plan] : []));
    expect(created).toHaveLength(3);
    await store.apply(created);
    for (const plan of created) expect(await store.row(plan.row.id)).toEqual(plan.row);
  });

  it('submissions: a finished job no longer holds its singleton key', async () => {
    const done = planCompletion(await active({ singletonKey: 'reused' }), lease.token, null, now()).plan!;
    await applyAndCheck(done);
    const jobs = [newJob('owner', { singletonKey: 'reused' })];
    const [result] = planSubmissions(jobs, await store.dedupCandidates(jobs), newId, now());
    expect(result!.plan).not.toBeNull();
    await applyAndCheck(result!.plan!);
  });

  it('a refused transition changes nothing', async () => {
    const row: JobRow = await inserted();
    expect(() => planFinish(row, 'complete', { result: 1 }, now())).toThrow(TransitionError);
    expect(() => planRecoverCrash(row, now(), 3)).toThrow(TransitionError);
    expect(await store.row(row.id)).toEqual(row);
  });
});
