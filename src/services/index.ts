import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';
import type { Clock } from '../utils/clock.js';
import type { CounterStore } from '../utils/counterStore.js';
import type { Mailer } from '../utils/mailer.js';
import { ApiKeyService } from './apiKeyService.js';
import { AuthService, type AuthSettings } from './authService.js';
import { LoginThrottle } from './loginThrottle.js';
import { UserService } from './userService.js';

export interface Services {
  readonly users: UserService;
  readonly apiKeys: ApiKeyService;
  readonly auth: AuthService;
}

export interface ServiceDependencies {
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  mailer: Mailer;
  counters: CounterStore;
  auth: AuthSettings;
}

export function createServices(deps: ServiceDependencies): Services {
  const users = new UserService(deps.db, deps.clock);
  const apiKeys = new ApiKeyService(deps.db, deps.clock);
  const throttle = new LoginThrottle(deps.counters, deps.clock);
  const auth = new AuthService(deps.db, users, apiKeys, throttle, deps.mailer, deps.auth, deps.clock, deps.logger);
  return { users, apiKeys, auth };
}
