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
}
