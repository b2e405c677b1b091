import type SqliteDatabase from 'better-sqlite3';
import { toError } from '../../utils/errors.js';
import { AfterCommit } from '../changes.js';
import { toAppError } from '../storageErrors.js';
import type { Statements } from './statements.js';
import type { WriteContext } from './store.js';

interface PendingWrite {
  run(ctx: WriteContext): unknown;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * The embedded engine's transactions: each is short and synchronous (state and event rows
 * together), and what it changed is announced after it commits. Writes of running jobs arriving
 * in the same tick (completions, failures, handler events) share one transaction.
 */
export class Transactions {
  private pending: PendingWrite[] = [];
  private flushScheduled = false;

  constructor(
    private readonly sqlite: SqliteDatabase.Database,
    private readonly st: Statements,
    private readonly context: { now(): number; maxCrashes: number },
    private readonly afterCommit: (after: AfterCommit) => void,
  ) {}

  /** Runs `fn` in one immediate transaction, then hands on what it changed. Refusals become AppErrors. */
  run<T>(fn: (ctx: WriteContext) => T): T {
    // better-sqlite3 would quietly turn this into a savepoint of someone else's transaction
    // (a Kysely one awaiting on the shared connection): fail loudly instead.
    if (this.sqlite.inTransaction) throw new Error('embedded engine: a transaction is already open on the connection');
    const ctx: WriteContext = { st: this.st, now: this.context.now(), after: new AfterCommit(), maxCrashes: this.context.maxCrashes };
    let result: T;
    try {
      result = this.sqlite.transaction(() => fn(ctx)).immediate();
    } catch (error) {
      throw toAppError(error);
    }
    this.afterCommit(ctx.after);
    return result;
  }

  /** Runs `fn` in a savepoint; what it changed is kept only if it succeeds. */
  nested<T>(ctx: WriteContext, fn: (inner: WriteContext) => T): T {
    const inner: WriteContext = { ...ctx, after: new AfterCommit() };
    const value = this.sqlite.transaction(() => fn(inner))();
    ctx.after.merge(inner.after);
    return value;
  }

  /** Queues a write for the transaction that commits this tick's writes together. */
  batched<T>(run: (ctx: WriteContext) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Commits every queued write in one transaction. Should one write throw (a bug, never an
   * expected outcome), the batch is rolled back and run again with a savepoint per write, so
   * the bad write fails alone.
   */
  flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    let values: unknown[];
    try {
      values = this.run((ctx) => batch.map((write) => write.run(ctx)));
    } catch {
      this.flushOneByOne(batch);
      return;
    }
    batch.forEach((write, index) => write.resolve(values[index]));
  }

  private flushOneByOne(batch: PendingWrite[]): void {
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: Error })[] = [];
    try {
      this.run((ctx) => {
        for (const write of batch) {
          try {
            outcomes.push({ ok: true, value: this.nested(ctx, (inner) => write.run(inner)) });
          } catch (error) {
            outcomes.push({ ok: false, error: toError(toAppError(error)) });
          }
        }
      });
    } catch (error) {
      for (const write of batch) write.reject(toError(error));
      return;
    }
    batch.forEach((write, index) => {
      const outcome = outcomes[index];
      if (outcome?.ok) write.resolve(outcome.value);
      else write.reject(outcome?.error ?? new Error('write lost'));
    });
  }
}
