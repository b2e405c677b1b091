/**
 * What an API key may do. A key carries a list of scopes; `*` is everything its owner may do.
 * Access tokens from a login carry every scope. A scope never widens a role: an ordinary
 * user's key with `admin` still cannot call admin routes.
 */
export const SCOPES = [
  'jobs:read',
  'jobs:write',
  'webhooks:read',
  'webhooks:write',
  'schedules:read',
  'schedules:write',
  'account:read',
  'account:write',
  'admin',
] as const;

export type Scope = (typeof SCOPES)[number];
export type GrantedScope = Scope | '*';

export function hasScope(granted: readonly GrantedScope[] | null, needed: Scope): boolean {
  if (granted === null) return true;
  return granted.includes('*') || granted.includes(needed);
}
