import { afterEach, describe, expect, it } from 'vitest';
import type { JobEvent } from '../../src/engine/types.js';
import { newJob } from '../conformance/harness.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/** Embedded-engine specifics that the conformance suite cannot see: listener failures, savepoints. */
describe('the embedded engine', () => {
  let server: TestRuntime | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
  });

  const job = (ownerId: string, overrides: Parameters<typeof newJob>[1] = {}) => newJob(ownerId, { maxAttempts: 1, ...overrides });

  it('commits each write once even when a listener throws', async () => {
    server = await startTestRuntime();
    const { engine } = server.runtime;
    const ownerId = (await server.login()).userId;
    engine.subscribe({
      events: () => {
        throw new Error('a broken listener');
      },
    });
    const [added] = await engine.addJobs([job(ownerId)]);
    const [claim] = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w', leaseMs: 10_000 });
    expect(claim).toBeDefined();
    const lease = { jobId: added!.job.id, token: claim!.token };
    const [appended, completed] = await Promise.all([
      engine.appendEvents(lease, [{ type: 'job.delta', data: { chunk: 'a' } }, { type: 'job.delta', data: { chunk: 'b' } }]),
      engine.completeJob(lease, 'done'),
    ]);
    expect(appended).toBe(true);
    expect(completed.accepted).toBe(true);
    const events = await engine.listEvents(lease.jobId, 0, 100);
    expect(events.map((event) => `${event.seq}:${event.type}`)).toEqual(['1:job.created', '2:job.active', '3:job.delta', '4:job.delta', '5:job.completed']);
    expect(server.logText()).toContain('an engine listener failed');
  });

  it('announces nothing for a retry that a savepoint rolled back', async () => {
    server = await startTestRuntime();
    const { engine } = server.runtime;
    const ownerId = (await server.login()).userId;
    const announced: JobEvent[] = [];
    engine.subscribe({ events: (events) => announced.push(...events) });
    // A fails; B then holds the singleton key, so retrying A must roll back.
    const [a] = await engine.addJobs([job(ownerId, { singletonKey: 'k' })]);
    const [claim] = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w', leaseMs: 10_000 });
    await engine.failJob({ jobId: a!.job.id, token: claim!.token }, { error: { message: 'no' }, nonRetriable: true, retryAfterMs: null });
    await engine.addJobs([job(ownerId, { singletonKey: 'k' })]);
    announced.length = 0;
    expect(await engine.retryFailed('manual')).toBe(0);
    expect(announced.filter((event) => event.jobId === a!.job.id)).toEqual([]);
    expect((await engine.getJob(a!.job.id))?.lastSeq).toBe(3);
  });
});
