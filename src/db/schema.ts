import type { Generated } from 'kysely';

/**
 * Kysely table types. Portable between SQLite and PostgreSQL: times are epoch milliseconds
 * (bigint), flags are 0/1 integers, structured values are JSON text.
 */

export interface UsersTable {
  id: string;
  email: string;
  password_hash: string;
  role: 'admin' | 'user';
  /** Bumped when a password changes or a user is demoted: older access tokens stop working. */
  token_version: number;
  created_at: number;
  updated_at: number;
}

export interface RefreshTokensTable {
  id: string;
  user_id: string;
  /** Every token issued from one login shares a family; reuse of any revokes them all. */
  family_id: string;
  token_hash: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  revoked_at: number | null;
}

export interface PasswordResetsTable {
  id: string;
  user_id: string;
  token_hash: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

export interface ApiKeysTable {
  id: string;
  user_id: string;
  name: string;
  prefix: string;
  key_hash: string;
  /** JSON array of scope names. */
  scopes: string;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface Database {
  users: UsersTable;
  refresh_tokens: RefreshTokensTable;
  password_resets: PasswordResetsTable;
  api_keys: ApiKeysTable;
  jobs: JobsTable;
  job_events: JobEventsTable;
  job_tags: JobTagsTable;
  queues: QueuesTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  outbox_cursors: OutboxCursorsTable;
  schedules: SchedulesTable;
}

export interface JobsTable {
  id: string;
  queue: string;
  type: string;
  state: 'queued' | 'scheduled' | 'active' | 'completed' | 'failed' | 'cancelled';
  priority: number;
  /** JSON text. */
  payload: string;
  result: string | null;
  error: string | null;
  progress: string | null;
  attempts_made: number;
  max_attempts: number;
  crash_count: number;
  backoff: string;
  timeout_ms: number | null;
  expires_at: number | null;
  idempotency_key: string | null;
  singleton_key: string | null;
  /** JSON array text. */
  tags: string;
  owner_id: string;
  schedule_id: string | null;
  created_at: number;
  run_at: number;
  started_at: number | null;
  finished_at: number | null;
  lease_token: string | null;
  lease_expires_at: number | null;
  worker_id: string | null;
  /** The seq of the job's latest event. */
  last_seq: number;
  /** For a schedule's job: the fire time it was created for (never changes, unlike run_at). */
  fire_at: number | null;
}

export interface SchedulesTable {
  id: string;
  owner_id: string;
  name: string;
  cron: string;
  timezone: string;
  /** JSON: the job template. */
  job: string;
  overlap: 'allow' | 'skip';
  catch_up: 'none' | 'once';
  enabled: number;
  next_run_at: number | null;
  last_run_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface JobEventsTable {
  /** Global commit order: outbox consumers (webhooks) read from a position in it. */
  id: Generated<number>;
  job_id: string;
  seq: number;
  /** Last seq of a coalesced run of job.delta events (data: {chunks: [...]}); null for one event. */
  seq_end: number | null;
  type: string;
  at: number;
  data: string;
}

export interface JobTagsTable {
  tag: string;
  created_at: number;
  job_id: string;
}

export interface QueuesTable {
  name: string;
  paused: number;
  updated_at: number;
}

export interface WebhookEndpointsTable {
  id: string;
  owner_id: string;
  url: string;
  description: string | null;
  /** JSON array of event types, or ["*"]. */
  events: string;
  /** Only events of jobs in this queue; null for every queue. */
  queue: string | null;
  /** `whsec_` + base64 of the signing key. */
  secret: string;
  /** The secret before the last rotation: deliveries carry its signature too until it expires. */
  previous_secret: string | null;
  previous_secret_expires_at: number | null;
  enabled: number;
  disabled_reason: string | null;
  /** When the first failed attempt since the last success happened; null while deliveries succeed. */
  failing_since: number | null;
  created_at: number;
  updated_at: number;
}

export interface WebhookDeliveriesTable {
  /** `msg_` + UUIDv7: the `webhook-id` header, the same on every attempt. */
  id: string;
  endpoint_id: string;
  event_type: string;
  /** null for test deliveries. */
  job_id: string | null;
  event_seq: number | null;
  /** The JSON body, fixed at creation so every attempt sends the same bytes. */
  payload: string;
  status: 'pending' | 'succeeded' | 'failed';
  /** Every attempt ever made. */
  attempts: number;
  /** Attempts since the delivery was last (re)scheduled: picks the next retry delay. */
  series_attempts: number;
  next_attempt_at: number;
  /** A sender's claim: nobody else sends this delivery before then. */
  locked_until: number | null;
  last_status_code: number | null;
  /** JSON {code, message}. */
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface WebhookAttemptsTable {
  id: string;
  delivery_id: string;
  attempted_at: number;
  status_code: number | null;
  duration_ms: number;
  /** JSON {code, message}. */
  error: string | null;
  /** The first 1 KiB of the response body. */
  response_excerpt: string | null;
}

export interface OutboxCursorsTable {
  consumer: string;
  /** The id of the last job_events row this consumer has processed. */
  position: number;
}
