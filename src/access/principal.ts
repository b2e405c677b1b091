import type { GrantedScope } from './scopes.js';

/** A user's role: an admin sees and runs everything; a user sees their own jobs, webhooks and schedules. */
export type UserRole = 'admin' | 'user';

/** Who is calling: a user through a login (every scope) or through one of their API keys. */
export interface Principal {
  userId: string;
  email: string;
  role: UserRole;
  via: 'token' | 'apiKey';
  /** null: every scope (a login); otherwise the API key's scopes. */
  scopes: GrantedScope[] | null;
  apiKeyId: string | null;
  /** When the credentials stop working (epoch ms): a login's access token, an API key's expiry; null for a key that never expires. */
  expiresAt: number | null;
}

/** Whoever turns an Authorization header into a Principal (the auth service); guards take only this. */
export interface Authenticator {
  authenticate(authorization: string | undefined): Promise<Principal>;
}
