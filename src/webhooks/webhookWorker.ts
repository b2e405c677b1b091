import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { ExpressionBuilder, Kysely, Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { WebhookMetrics } from '../config/metrics.js';
import type { Database } from '../db/schema.js';
import type { DeliveryRow, EndpointRow } from './webhookRecords.js';
import { toIso, type Clock } from '../utils/clock.js';
import { toError } from '../utils/errors.js';
import { newId } from '../utils/ids.js';
import { SerialTask } from '../utils/serialTask.js';
import { guardedFetch, type OutboundPolicy } from '../utils/ssrfGuard.js';
import { signatureHeader } from '../utils/webhookSignature.js';
import { nextStep, reportFromFailure, reportFromResponse, RESPONSE_EXCERPT_BYTES, type AttemptReport } from './webhookOutcome.js';

/**
 * Sends webhook deliveries: claims due pending deliveries (a lock, so no two senders send one at
 * once), POSTs each through the SSRF guard with the Standard Webhooks headers, records the
 * attempt, and schedules the retry or settles the delivery (webhookOutcome.ts holds the rules).
 * Delivery is at least once: a send cut short (crash, shutdown) leaves the delivery pending, and
 * it is sent again when its lock expires or, with one process owning the store, at the next start.
 */

export const WEBHOOK_USER_AGENT = 'Jobline-Webhooks/1';
export const WEBHOOK_TIMEOUT_MS = 15_000;
/** A claim outlives the longest send by this much before another sender may take the delivery. */
const LOCK_MARGIN_MS = 15_000;
const DEFAULT_CONCURRENCY = 16;
const DEFAULT_POLL_MS = 1000;
/** Never re-check sooner than this, so a due delivery that could not be claimed does not spin the loop. */
const MIN_WAIT_MS = 10;

export interface WebhookWorkerOptions {
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  policy: OutboundPolicy;
  metrics: WebhookMetrics;
  /** One entry per retry (`JOBLINE_WEBHOOK_RETRY_DELAYS`). */
  retryDelays: readonly number[];
  /** An endpoint failing for this long without a success is disabled (`JOBLINE_WEBHOOK_DISABLE_AFTER`). */
  disableAfterMs: number;
  /** Only this process sends (embedded engine): claims left by a previous process are void at start. */
  releaseLocksAtStart: boolean;
  concurrency?: number;
  /** Looks for due deliveries at least this often (others' redeliveries, expired locks). */
  pollIntervalMs?: number;
  timeoutMs?: number;
  random?: () => number;
}

type Db = Kysely<Database> | Transaction<Database>;

function unlocked(now: number) {
  return (eb: ExpressionBuilder<Database, 'webhook_deliveries'>) =>
    eb.or([eb('webhook_deliveries.locked_until', 'is', null), eb('webhook_deliveries.locked_until', '<=', now)]);
}

export class WebhookWorker {
  private readonly task: SerialTask;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly aborter = new AbortController();
  private readonly concurrency: number;
  private readonly timeoutMs: number;
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(private readonly options: WebhookWorkerOptions) {
    this.concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    this.timeoutMs = options.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
    // Every send in flight listens to the one shutdown signal.
    setMaxListeners(this.concurrency + 1, this.aborter.signal);
    this.task = new SerialTask(
      () => this.tick(),
      (error) => options.logger.error({ err: toError(error) }, 'webhook sender tick failed'),
    );
  }

  async start(): Promise<void> {
    if (this.options.releaseLocksAtStart) {
      await this.options.db
        .updateTable('webhook_deliveries')
        .set({ locked_until: null })
        .where('status', '=', 'pending')
        .where('locked_until', 'is not', null)
        .execute();
    }
    this.running = true;
    this.task.trigger();
  }

  /** Deliveries may be due: look now rather than at the next poll. */
  wake(): void {
    if (this.running) this.task.trigger();
  }

  /** Stops claiming; lets sends finish for up to `graceMs`, then abandons the rest (they stay pending). */
  async stop(graceMs: number): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.task.stop();
    const settled = Promise.allSettled([...this.inFlight]);
    let graceTimer: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((resolve) => (graceTimer = setTimeout(() => resolve(true), graceMs)));
    if (await Promise.race([settled.then(() => false), expired])) {
      this.aborter.abort();
      await settled;
    }
    clearTimeout(graceTimer);
  }

  private async tick(): Promise<void> {
    if (!this.running) return;
    const room = this.concurrency - this.inFlight.size;
    if (room > 0) {
      for (const { delivery, endpoint } of await this.claim(room)) this.launch(delivery, endpoint);
    }
    await this.armTimer();
  }

  /** Sleeps until the earliest pending delivery is due, or the poll interval, whichever is sooner. */
  private async armTimer(): Promise<void> {
    if (!this.running) return;
    const poll = this.options.pollIntervalMs ?? DEFAULT_POLL_MS;
    let wait = poll;
    if (this.inFlight.size < this.concurrency) {
      const now = this.options.clock.now();
      const next = await this.dueQuery(now, Number.MAX_SAFE_INTEGER)
        .select((eb) => eb.fn.min('webhook_deliveries.next_attempt_at').as('at'))
        .executeTakeFirst();
      if (next?.at != null) wait = Math.min(poll, Math.max(MIN_WAIT_MS, Number(next.at) - now));
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.task.trigger(), wait);
    this.timer.unref();
  }

  /** Pending deliveries of enabled endpoints, due by `dueBy`, that nobody holds. */
  private dueQuery(now: number, dueBy: number) {
    return this.options.db
      .selectFrom('webhook_deliveries')
      .innerJoin('webhook_endpoints', 'webhook_endpoints.id', 'webhook_deliveries.endpoint_id')
      .where('webhook_deliveries.status', '=', 'pending')
      .where('webhook_deliveries.next_attempt_at', '<=', dueBy)
      .where(unlocked(now))
      .where('webhook_endpoints.enabled', '=', 1);
  }

  private async claim(limit: number): Promise<{ delivery: DeliveryRow; endpoint: EndpointRow }[]> {
    const { db, clock } = this.options;
    const now = clock.now();
    const due = await this.dueQuery(now, now)
      .select('webhook_deliveries.id')
      .orderBy('webhook_deliveries.next_attempt_at')
      .limit(limit)
      .execute();
    if (due.length === 0) return [];
    // The conditions again: of several senders that saw the same rows, only one takes each.
    const claimed = await db
      .updateTable('webhook_deliveries')
      .set({ locked_until: now + this.timeoutMs + LOCK_MARGIN_MS })
      .where('id', 'in', due.map((row) => row.id))
      .where('status', '=', 'pending')
      .where(unlocked(now))
      .returningAll()
      .execute();
    if (claimed.length === 0) return [];
    const endpointIds = [...new Set(claimed.map((row) => row.endpoint_id))];
    const endpoints = new Map(
      (await db.selectFrom('webhook_endpoints').selectAll().where('id', 'in', endpointIds).execute()).map((row) => [row.id, row]),
    );
    return claimed.flatMap((delivery) => {
      const endpoint = endpoints.get(delivery.endpoint_id);
      return endpoint ? [{ delivery, endpoint }] : [];
    });
  }

  private launch(delivery: DeliveryRow, endpoint: EndpointRow): void {
    const sending = this.send(delivery, endpoint)
      .catch((error: unknown) => this.options.logger.error({ err: toError(error), deliveryId: delivery.id }, 'recording a webhook attempt failed'))
      .finally(() => {
        this.inFlight.delete(sending);
        this.wake();
      });
    this.inFlight.add(sending);
  }

  private async send(delivery: DeliveryRow, endpoint: EndpointRow): Promise<void> {
    const attemptedAt = this.options.clock.now();
    const started = performance.now();
    let report: AttemptReport;
    try {
      const response = await guardedFetch(this.options.policy, endpoint.url, {
        method: 'POST',
        headers: this.headers(delivery, endpoint, attemptedAt),
        body: delivery.payload,
        timeoutMs: this.timeoutMs,
        maxResponseBytes: RESPONSE_EXCERPT_BYTES,
        signal: this.aborter.signal,
      });
      report = reportFromResponse(response, this.options.clock.now());
    } catch (thrown) {
      if (this.aborter.signal.aborted) {
        // Shutting down: not an attempt. Free the delivery for the next sender at once.
        await this.options.db.updateTable('webhook_deliveries').set({ locked_until: null }).where('id', '=', delivery.id).execute();
        return;
      }
      report = reportFromFailure(thrown);
    }
    await this.record(delivery, endpoint, report, attemptedAt, Math.round(performance.now() - started));
  }

  private headers(delivery: DeliveryRow, endpoint: EndpointRow, at: number): Record<string, string> {
    const secrets = [endpoint.secret];
    // During a rotation both signatures go out, so a receiver with either secret can verify.
    if (endpoint.previous_secret !== null && Number(endpoint.previous_secret_expires_at ?? 0) > at) secrets.push(endpoint.previous_secret);
    return {
      'content-type': 'application/json',
      'user-agent': WEBHOOK_USER_AGENT,
      'webhook-id': delivery.id,
      'webhook-timestamp': String(Math.floor(at / 1000)),
      'webhook-signature': signatureHeader(secrets, delivery.id, new Date(at), delivery.payload),
    };
  }

  /** Writes the attempt, the delivery's new state and the endpoint's health in one transaction. */
  private async record(delivery: DeliveryRow, endpoint: EndpointRow, report: AttemptReport, attemptedAt: number, durationMs: number): Promise<void> {
    const { db, clock, retryDelays, random } = this.options;
    const step = nextStep(report, delivery.series_attempts + 1, retryDelays, random);
    const now = clock.now();
    const disabled = await db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('webhook_deliveries')
        .set((eb) => ({
          attempts: eb('attempts', '+', 1),
          series_attempts: eb('series_attempts', '+', 1),
          status: step.status,
          next_attempt_at: step.status === 'pending' ? now + step.delayMs : now,
          locked_until: null,
          last_status_code: report.statusCode,
          last_error: report.error === null ? null : JSON.stringify(report.error),
          updated_at: now,
        }))
        .where('id', '=', delivery.id)
        .executeTakeFirst();
      // Deleted with its endpoint while it was being sent: nothing to record.
      if (Number(updated.numUpdatedRows) === 0) return null;
      await trx
        .insertInto('webhook_attempts')
        .values({
          id: newId(),
          delivery_id: delivery.id,
          attempted_at: attemptedAt,
          status_code: report.statusCode,
          duration_ms: durationMs,
          error: report.error === null ? null : JSON.stringify(report.error),
          response_excerpt: report.responseExcerpt,
        })
        .execute();
      return this.updateEndpointHealth(trx, endpoint.id, report, now);
    });
    this.options.metrics.attemptEnded(step.status === 'pending' ? 'retried' : step.status, durationMs);
    if (disabled !== null) this.options.logger.warn({ endpointId: endpoint.id, reason: disabled }, 'webhook endpoint disabled');
  }

  /** Tracks since when an endpoint has only failed; disables it on 410 or after `disableAfterMs`. Returns the reason if it disabled it. */
  private async updateEndpointHealth(trx: Db, endpointId: string, report: AttemptReport, now: number): Promise<string | null> {
    if (report.ok) {
      await trx.updateTable('webhook_endpoints').set({ failing_since: null }).where('id', '=', endpointId).where('failing_since', 'is not', null).execute();
      return null;
    }
    const row = await trx.selectFrom('webhook_endpoints').select(['failing_since', 'enabled']).where('id', '=', endpointId).executeTakeFirst();
    if (!row) return null;
    const failingSince = row.failing_since === null ? now : Number(row.failing_since);
    let reason: string | null = null;
    if (report.gone) reason = `The endpoint answered 410 Gone at ${toIso(now)}.`;
    else if (now - failingSince >= this.options.disableAfterMs) reason = `Every delivery attempt has failed since ${toIso(failingSince)}.`;
    if (reason === null || row.enabled !== 1) {
      if (row.failing_since === null) await trx.updateTable('webhook_endpoints').set({ failing_since: now }).where('id', '=', endpointId).execute();
      return null;
    }
    await trx
      .updateTable('webhook_endpoints')
      .set({ failing_since: failingSince, enabled: 0, disabled_reason: reason, updated_at: now })
      .where('id', '=', endpointId)
      .execute();
    return reason;
  }
}
