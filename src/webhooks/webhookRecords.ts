import type { Selectable } from 'kysely';
import type { WebhookAttemptsTable, WebhookDeliveriesTable, WebhookEndpointsTable } from '../db/schema.js';
import { EVENT_TYPES, type JobEventType } from '../engine/types.js';
import { toIso, toIsoOrNull } from '../utils/clock.js';
import { newId } from '../utils/ids.js';

/**
 * Webhook records shared by the API (webhookService) and the workers that create and send
 * deliveries: row mapping, the event filter, and how a delivery row starts out.
 */

export type EndpointRow = Selectable<WebhookEndpointsTable>;
export type DeliveryRow = Selectable<WebhookDeliveriesTable>;
export type AttemptRow = Selectable<WebhookAttemptsTable>;

export const TEST_EVENT_TYPE = 'webhook.test';
/** High-volume events: `*` leaves them out; an endpoint gets them only by naming them. */
export const EXPLICIT_ONLY_EVENTS: readonly JobEventType[] = ['job.delta', 'job.progress', 'job.log'];
export const WEBHOOK_EVENT_FILTERS = [...EVENT_TYPES, '*'] as const;
export type WebhookEventFilter = (typeof WEBHOOK_EVENT_FILTERS)[number];

export interface PublicWebhookEndpoint {
  id: string;
  ownerId: string;
  url: string;
  description: string | null;
  events: WebhookEventFilter[];
  queue: string | null;
  enabled: boolean;
  /** Why Jobline disabled the endpoint (410, or failing for too long); null when enabled or disabled by hand. */
  disabledReason: string | null;
  /** Since when every attempt has failed; null while deliveries succeed. */
  failingSince: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface DeliveryErrorInfo {
  code: string;
  message: string;
}

export interface PublicDelivery {
  id: string;
  endpointId: string;
  eventType: string;
  jobId: string | null;
  eventSeq: number | null;
  status: DeliveryRow['status'];
  attempts: number;
  lastStatusCode: number | null;
  lastError: DeliveryErrorInfo | null;
  createdAt: string;
  /** When the next attempt is due; null once the delivery succeeded or failed. */
  nextAttemptAt: string | null;
}

export interface PublicAttempt {
  attemptedAt: string;
  statusCode: number | null;
  durationMs: number;
  error: DeliveryErrorInfo | null;
  responseExcerpt: string | null;
}

export interface PublicDeliveryDetail extends Omit<PublicDelivery, 'attempts'> {
  /** The exact body every attempt sends. */
  payload: unknown;
  attempts: PublicAttempt[];
}

function parseError(text: string | null): DeliveryErrorInfo | null {
  return text === null ? null : (JSON.parse(text) as DeliveryErrorInfo);
}

export function toPublicEndpoint(row: EndpointRow): PublicWebhookEndpoint {
  return {
    id: row.id,
    ownerId: row.owner_id,
    url: row.url,
    description: row.description,
    events: JSON.parse(row.events) as WebhookEventFilter[],
    queue: row.queue,
    enabled: row.enabled === 1,
    disabledReason: row.disabled_reason,
    failingSince: toIsoOrNull(row.failing_since),
    createdAt: toIso(Number(row.created_at)),
    updatedAt: toIso(Number(row.updated_at)),
  };
}

export function toPublicDelivery(row: DeliveryRow): PublicDelivery {
  return {
    id: row.id,
    endpointId: row.endpoint_id,
    eventType: row.event_type,
    jobId: row.job_id,
    eventSeq: row.event_seq,
    status: row.status,
    attempts: row.attempts,
    lastStatusCode: row.last_status_code,
    lastError: parseError(row.last_error),
    createdAt: toIso(Number(row.created_at)),
    nextAttemptAt: row.status === 'pending' ? toIso(Number(row.next_attempt_at)) : null,
  };
}

export function toPublicAttempt(row: AttemptRow): PublicAttempt {
  return {
    attemptedAt: toIso(Number(row.attempted_at)),
    statusCode: row.status_code,
    durationMs: row.duration_ms,
    error: parseError(row.error),
    responseExcerpt: row.response_excerpt,
  };
}

/** Does an endpoint's event filter take this event type? */
export function wantsEvent(filters: readonly string[], type: string): boolean {
  if (filters.includes(type)) return true;
  return filters.includes('*') && !(EXPLICIT_ONLY_EVENTS as readonly string[]).includes(type);
}

/** A delivery id is the `webhook-id` header: `msg_` + a UUIDv7, so ids sort by creation time. */
export function newDeliveryId(): string {
  return `msg_${newId()}`;
}

/** A new delivery, due at once. */
export function newDeliveryRow(input: {
  endpointId: string;
  eventType: string;
  jobId: string | null;
  eventSeq: number | null;
  payload: string;
  now: number;
}): DeliveryRow {
  return {
    id: newDeliveryId(),
    endpoint_id: input.endpointId,
    event_type: input.eventType,
    job_id: input.jobId,
    event_seq: input.eventSeq,
    payload: input.payload,
    status: 'pending',
    attempts: 0,
    series_attempts: 0,
    next_attempt_at: input.now,
    locked_until: null,
    last_status_code: null,
    last_error: null,
    created_at: input.now,
    updated_at: input.now,
  };
}

/** The body of every delivery: `{type, timestamp, data}`, serialised once and sent as is on every attempt. */
export function deliveryBody(type: string, at: number, data: Record<string, unknown>): string {
  return JSON.stringify({ type, timestamp: toIso(at), data });
}
