import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Clock } from '../utils/clock.js';
import { errors } from '../utils/errors.js';
import { newId } from '../utils/ids.js';
import { decodeCursor, encodeCursor, type Page } from '../utils/pagination.js';
import type { OutboundPolicy } from '../utils/ssrfGuard.js';
import { newWebhookSecret } from '../utils/webhookSignature.js';
import type { Principal } from '../access/principal.js';
import {
  deliveryBody,
  newDeliveryRow,
  TEST_EVENT_TYPE,
  toPublicAttempt,
  toPublicDelivery,
  toPublicEndpoint,
  type DeliveryRow,
  type EndpointRow,
  type PublicDelivery,
  type PublicDeliveryDetail,
  type PublicWebhookEndpoint,
  type WebhookEventFilter,
} from './webhookRecords.js';

/** After a rotation the old secret keeps signing (beside the new one) this long, so receivers can switch over. */
export const SECRET_ROTATION_OVERLAP_MS = 24 * 3_600_000;

export interface WebhookInput {
  url: string;
  events: WebhookEventFilter[];
  queue?: string | undefined;
  description?: string | undefined;
}

export interface WebhookPatch {
  url?: string | undefined;
  events?: WebhookEventFilter[] | undefined;
  /** null removes the queue filter. */
  queue?: string | null | undefined;
  description?: string | null | undefined;
  enabled?: boolean | undefined;
  rotateSecret?: boolean | undefined;
}

export interface ListDeliveriesQuery {
  status?: DeliveryRow['status'] | undefined;
  limit: number;
  cursor?: string | undefined;
}

/** The endpoint with its signing secret: only in the answers to creation and rotation. */
export type WebhookWithSecret = PublicWebhookEndpoint & { secret: string };

/** Webhook endpoints and their delivery logs, with ownership: a user sees their own, an admin all. */
export class WebhookService {
  private readonly scheduledListeners = new Set<() => void>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    /** Refuses URLs whose scheme, credentials or literal address the SSRF guard would refuse anyway. */
    private readonly policy: Pick<OutboundPolicy, 'assertUrlAllowed'>,
  ) {}

  /** Called when a delivery is due at once (test, redelivery), so a sender in this process need not wait for its poll. */
  onDeliveryScheduled(listener: () => void): () => void {
    this.scheduledListeners.add(listener);
    return () => this.scheduledListeners.delete(listener);
  }

  async create(principal: Principal, input: WebhookInput): Promise<WebhookWithSecret> {
    const now = this.clock.now();
    const row: EndpointRow = {
      id: newId(),
      owner_id: principal.userId,
      url: this.checkedUrl(input.url),
      description: input.description ?? null,
      events: JSON.stringify(normalizeEvents(input.events)),
      queue: input.queue ?? null,
      secret: newWebhookSecret(),
      previous_secret: null,
      previous_secret_expires_at: null,
      enabled: 1,
      disabled_reason: null,
      failing_since: null,
      created_at: now,
      updated_at: now,
    };
    await this.db.insertInto('webhook_endpoints').values(row).execute();
    return { ...toPublicEndpoint(row), secret: row.secret };
  }

  async list(principal: Principal): Promise<PublicWebhookEndpoint[]> {
    let query = this.db.selectFrom('webhook_endpoints').selectAll();
    if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.userId);
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
    return rows.map(toPublicEndpoint);
  }

  async get(principal: Principal, id: string): Promise<PublicWebhookEndpoint> {
    return toPublicEndpoint(await this.visibleEndpoint(principal, id));
  }

  async update(principal: Principal, id: string, patch: WebhookPatch): Promise<PublicWebhookEndpoint & { secret?: string }> {
    const current = await this.visibleEndpoint(principal, id);
    const now = this.clock.now();
    const changes: Partial<EndpointRow> = { updated_at: now };
    if (patch.url !== undefined) changes.url = this.checkedUrl(patch.url);
    if (patch.events !== undefined) changes.events = JSON.stringify(normalizeEvents(patch.events));
    if (patch.queue !== undefined) changes.queue = patch.queue;
    if (patch.description !== undefined) changes.description = patch.description;
    if (patch.enabled !== undefined) {
      changes.enabled = patch.enabled ? 1 : 0;
      // Enabling starts afresh; disabling by hand has no reason to show.
      changes.disabled_reason = null;
      changes.failing_since = null;
    }
    if (patch.rotateSecret === true) {
      changes.secret = newWebhookSecret();
      changes.previous_secret = current.secret;
      changes.previous_secret_expires_at = now + SECRET_ROTATION_OVERLAP_MS;
    }
    await this.db.updateTable('webhook_endpoints').set(changes).where('id', '=', id).execute();
    const updated = toPublicEndpoint({ ...current, ...changes });
    if (patch.enabled === true) this.announceScheduled();
    return changes.secret === undefined ? updated : { ...updated, secret: changes.secret };
  }

  /** Deletes the endpoint; its deliveries and their attempts go with it (foreign keys cascade). */
  async delete(principal: Principal, id: string): Promise<void> {
    await this.visibleEndpoint(principal, id);
    await this.db.deleteFrom('webhook_endpoints').where('id', '=', id).execute();
  }

  /** Queues a `webhook.test` delivery, sent like any other (signed, retried, logged). */
  async sendTest(principal: Principal, id: string): Promise<PublicDelivery> {
    const endpoint = await this.visibleEndpoint(principal, id);
    if (endpoint.enabled !== 1) throw errors.webhookDisabled(endpoint.disabled_reason);
    const now = this.clock.now();
    const payload = deliveryBody(TEST_EVENT_TYPE, now, { endpointId: id, message: 'A test delivery from Jobline.' });
    const row = newDeliveryRow({ endpointId: id, eventType: TEST_EVENT_TYPE, jobId: null, eventSeq: null, payload, now });
    await this.db.insertInto('webhook_deliveries').values(row).execute();
    this.announceScheduled();
    return toPublicDelivery(row);
  }

  /** The endpoint's deliveries, newest first. */
  async listDeliveries(principal: Principal, id: string, query: ListDeliveriesQuery): Promise<Page<PublicDelivery>> {
    await this.visibleEndpoint(principal, id);
    let select = this.db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', id);
    if (query.status !== undefined) select = select.where('status', '=', query.status);
    if (query.cursor !== undefined) {
      const [createdAt, deliveryId] = decodeCursor('deliveries', query.cursor);
      if (typeof createdAt !== 'number' || typeof deliveryId !== 'string') throw errors.invalidCursor();
      select = select.where((eb) => eb(eb.refTuple('created_at', 'id'), '<', eb.tuple(createdAt, deliveryId)));
    }
    const rows = await select.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(query.limit + 1).execute();
    const items = rows.slice(0, query.limit);
    const last = items.at(-1);
    return {
      items: items.map(toPublicDelivery),
      nextCursor: rows.length > query.limit && last ? encodeCursor('deliveries', [Number(last.created_at), last.id]) : null,
    };
  }

  /** One delivery with its body and every attempt, oldest first. */
  async getDelivery(principal: Principal, id: string, deliveryId: string): Promise<PublicDeliveryDetail> {
    await this.visibleEndpoint(principal, id);
    const row = await this.endpointDelivery(id, deliveryId);
    const attempts = await this.db
      .selectFrom('webhook_attempts')
      .selectAll()
      .where('delivery_id', '=', deliveryId)
      .orderBy('attempted_at')
      .orderBy('id')
      .execute();
    return { ...toPublicDelivery(row), payload: JSON.parse(row.payload) as unknown, attempts: attempts.map(toPublicAttempt) };
  }

  /** Sends the delivery again now, with a fresh series of attempts and the same `webhook-id` and body. */
  async redeliver(principal: Principal, id: string, deliveryId: string): Promise<PublicDelivery> {
    const endpoint = await this.visibleEndpoint(principal, id);
    if (endpoint.enabled !== 1) throw errors.webhookDisabled(endpoint.disabled_reason);
    const row = await this.endpointDelivery(id, deliveryId);
    const now = this.clock.now();
    const changes = { status: 'pending' as const, series_attempts: 0, next_attempt_at: now, updated_at: now };
    await this.db.updateTable('webhook_deliveries').set(changes).where('id', '=', deliveryId).execute();
    this.announceScheduled();
    return toPublicDelivery({ ...row, ...changes });
  }

  /** The endpoint, if this principal may see it; another user's endpoint is "not found", not "forbidden". */
  private async visibleEndpoint(principal: Principal, id: string): Promise<EndpointRow> {
    const row = await this.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row || (principal.role !== 'admin' && row.owner_id !== principal.userId)) throw errors.webhookNotFound();
    return row;
  }

  private async endpointDelivery(endpointId: string, deliveryId: string): Promise<DeliveryRow> {
    const row = await this.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('id', '=', deliveryId)
      .where('endpoint_id', '=', endpointId)
      .executeTakeFirst();
    if (!row) throw errors.deliveryNotFound();
    return row;
  }

  private checkedUrl(url: string): string {
    return this.policy.assertUrlAllowed(url).href;
  }

  private announceScheduled(): void {
    for (const listener of this.scheduledListeners) listener();
  }
}

/** Each filter once, in the order given. */
function normalizeEvents(events: readonly WebhookEventFilter[]): WebhookEventFilter[] {
  return [...new Set(events)];
}
