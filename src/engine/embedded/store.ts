import type { AfterCommit, Plan } from '../changes.js';
import type { JobRow } from '../rows.js';
import type { Statements } from './statements.js';

/**
 * The embedded engine's store: applies plans to SQLite with the prepared statements. Each call
 * runs inside the caller's synchronous transaction and records the plan's after-commit work.
 */
export interface WriteContext {
  st: Statements;
  now: number;
  after: AfterCommit;
  maxCrashes: number;
}

/** Writes a plan's row change and its event rows (the outbox), and keeps its after-commit work. Returns the new row. */
export function applyPlan(ctx: WriteContext, plan: Plan): JobRow {
  if (plan.write.kind === 'insert') {
    ctx.st.insertJob.run(plan.row);
    for (const tag of plan.write.tags) ctx.st.insertTag.run(tag, ctx.now, plan.row.id);
  } else {
    ctx.st.updateJob(plan.row, plan.write);
  }
  // Positional parameters: binding by name costs a property lookup each, on the hottest statement.
  for (const row of plan.eventRows) ctx.st.insertEvent.run(row.job_id, row.seq, row.seq_end, row.type, row.at, row.data);
  ctx.after.add(plan);
  return plan.row;
}

/** Applies a plan that may be null (a lease that was lost: nothing to write). */
export function applyIfAny(ctx: WriteContext, plan: Plan | null): void {
  if (plan) applyPlan(ctx, plan);
}

/** The stored rows that may hold a submission's dedup keys. */
export function dedupCandidates(st: Statements, job: { scheduleId: string | null; fireAt?: number | null; ownerId: string; idempotencyKey: string | null; singletonKey: string | null }): JobRow[] {
  const rows: (JobRow | undefined)[] = [
    job.scheduleId !== null && job.fireAt != null ? st.jobByFireTime.get(job.scheduleId, job.fireAt) : undefined,
    job.idempotencyKey !== null ? st.jobByIdempotencyKey.get(job.ownerId, job.idempotencyKey) : undefined,
    job.singletonKey !== null ? st.liveJobBySingletonKey.get(job.ownerId, job.singletonKey) : undefined,
  ];
  return rows.filter((row): row is JobRow => row !== undefined);
}

/** Removes a job with its events and tags. */
export function deleteJob(st: Statements, jobId: string): void {
  st.deleteEvents.run(jobId);
  st.deleteTags.run(jobId);
  st.deleteJob.run(jobId);
}
