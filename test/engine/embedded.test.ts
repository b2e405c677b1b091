import { afterEach, describe, expect, it } from 'vitest';
import { newJob } from '../conformance/harness.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * Embedded-engine specifics that the conformance suite cannot see: writes of one tick share a
 * transaction, which a failing listener must not make run twice. (A retry refused by the
 * singleton index, announcing nothing, is in test/conformance/port.test.ts for both engines.)
 */
describe('the embedded engine', () => {
  let server: TestRuntime | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
  });

  const job = (ownerId: string, overrides: Parameters<typeof newJob>[1] = {}) => newJob(ownerId, { maxAttempts: 1, ...overrides });

  it('commits each write of a same-tick batch once even when a listener throws', async () => {
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
});
