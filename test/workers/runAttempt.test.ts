import { afterEach, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/types.js';
import { startAttempt } from '../../src/workers/runAttempt.js';
import type { RegisteredHandler } from '../../src/workers/registry.js';
import { newJob } from '../conformance/harness.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const handler = (run: RegisteredHandler['run']): RegisteredHandler => ({ type: 'unhandled', queue: 'manual', concurrency: 1, run, source: 'test' });

describe('reporting an attempt', () => {
  let server: TestRuntime | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
  });

  /** A claimed job on a real engine, and that engine with `failing` calls throwing as an unreachable store would. */
  async function claimed(failing: { completeJob?: number; failJob?: number }) {
    server = await startTestRuntime();
    const engine = server.runtime.engine;
    const [added] = await engine.addJobs([newJob((await server.login()).userId, { maxAttempts: 1 })]);
    const [claim] = await engine.claimJobs({ queue: 'manual', types: ['unhandled'], limit: 1, workerId: 'w1', leaseMs: 60_000 });
    const calls: string[] = [];
    const remaining = { ...failing };
    const flaky = Object.create(engine) as Engine;
    for (const method of ['completeJob', 'failJob'] as const) {
      flaky[method] = ((...args: Parameters<Engine[typeof method]>) => {
        calls.push(method);
        if ((remaining[method] ?? 0) > 0) {
          remaining[method]! -= 1;
          return Promise.reject(new Error('Connection terminated unexpectedly'));
        }
        return (engine[method] as (...a: unknown[]) => ReturnType<Engine[typeof method]>).apply(engine, args);
      }) as never;
    }
    return { engine, flaky, claim: claim!, jobId: added!.job.id, calls };
  }

  it('tries a completion again when the store refuses it, and never turns it into a failure', async () => {
    const { engine, flaky, claim, jobId, calls } = await claimed({ completeJob: 2 });
    const reportErrors: string[] = [];
    let runs = 0;
    const attempt = startAttempt(flaky, claim, handler(async () => ({ runs: ++runs })), { onReportError: (error) => reportErrors.push(error.message) });
    expect(await attempt.done).toBe('completed');
    expect(calls).toEqual(['completeJob', 'completeJob', 'completeJob']);
    expect(reportErrors).toEqual(['Connection terminated unexpectedly', 'Connection terminated unexpectedly']);
    expect(await engine.getJob(jobId)).toMatchObject({ state: 'completed', result: { runs: 1 } });
  });

  it('tries a failure again the same way', async () => {
    const { engine, flaky, claim, jobId, calls } = await claimed({ failJob: 1 });
    const attempt = startAttempt(
      flaky,
      claim,
      handler(async () => {
        throw new Error('handler says no');
      }),
    );
    expect(await attempt.done).toBe('failed');
    expect(calls).toEqual(['failJob', 'failJob']);
    expect(await engine.getJob(jobId)).toMatchObject({ state: 'failed', error: { message: 'handler says no' } });
  });

  it('stops trying once the attempt no longer holds its job', async () => {
    const { engine, flaky, claim, jobId, calls } = await claimed({ completeJob: Number.POSITIVE_INFINITY });
    const attempt = startAttempt(flaky, claim, handler(async () => 'done'));
    // Let a few tries fail, then lose the lease, as the pool does when a renewal is refused.
    while (calls.length < 3) await new Promise((resolve) => setTimeout(resolve, 20));
    attempt.stopReason = 'lease_lost';
    expect(await attempt.done).toBe('stopped');
    expect(calls.every((call) => call === 'completeJob')).toBe(true);
    expect((await engine.getJob(jobId))?.state).toBe('active');
  });
});
