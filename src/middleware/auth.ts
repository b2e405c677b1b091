import type { FastifyRequest, preValidationAsyncHookHandler } from 'fastify';
import type { Authenticator, Principal } from '../access/principal.js';
import { hasScope, type Scope } from '../access/scopes.js';
import { errors } from '../utils/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Guards run as preValidation hooks: after the rate limit, before input is validated, so a caller without credentials learns nothing about the input. */
export interface AuthGuards {
  /** Any authenticated user whose credentials carry `scope`. */
  user(scope: Scope): preValidationAsyncHookHandler;
  /** An administrator whose credentials carry `scope`. */
  admin(scope: Scope): preValidationAsyncHookHandler;
}

export function createAuthGuards(auth: Authenticator): AuthGuards {
  const guard = (scope: Scope, adminOnly: boolean): preValidationAsyncHookHandler =>
    async function authenticate(request) {
      const principal = await auth.authenticate(request.headers.authorization);
      request.principal = principal;
      request.log = request.log.child({ userId: principal.userId });
      if (adminOnly && principal.role !== 'admin') throw errors.forbidden('This needs an administrator.');
      if (!hasScope(principal.scopes, scope)) throw errors.insufficientScope(scope);
    };
  return { user: (scope) => guard(scope, false), admin: (scope) => guard(scope, true) };
}

/** The caller of a route guarded by AuthGuards. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw errors.unauthenticated();
  return request.principal;
}
