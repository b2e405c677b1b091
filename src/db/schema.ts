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
  job_id: string;
}

export interface QueuesTable {
  name: string;
  paused: number;
  updated_at: number;
}
