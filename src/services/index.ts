import type { Kysely } from 'kysely';
import type { Engine } from '../engine/types.js';
import type { JobEventHub } from '../events/hub.js';
import type { ControlMessage } from '../events/index.js';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';
import type { Clock } from '../utils/clock.js';
import type { CounterStore } from '../utils/counterStore.js';
import type { Mailer } from '../utils/mailer.js';
import type { OutboundPolicy } from '../utils/ssrfGuard.js';
import { ApiKeyService } from './apiKeyService.js';
import { AuthService, type AuthSettings } from './authService.js';
import { JobService, type JobLimits, type JobTypes } from './jobService.js';
import { LoginThrottle } from './loginThrottle.js';
import { QueueService } from './queueService.js';
import { ScheduleService, ScheduleStore } from './scheduleService.js';
import { UserService } from './userService.js';
import { WebhookService } from '../webhooks/webhookService.js';

export interface Services {
  readonly users: UserService;
  readonly apiKeys: ApiKeyService;
  readonly auth: AuthService;
  readonly jobs: JobService;
  readonly queues: QueueService;
  readonly webhooks: WebhookService;
  readonly schedules: ScheduleService;
  readonly scheduleStore: ScheduleStore;
}

export interface ServiceDependencies {
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  mailer: Mailer;
  counters: CounterStore;
  auth: AuthSettings;
  engine: Engine;
  jobTypes: JobTypes;
  jobLimits: JobLimits;
  /** Session-ending notices for live connections (the event bus). */
  notify: (message: ControlMessage) => void;
  hub: JobEventHub;
  /** The SSRF guard webhook URLs are checked against (the sender uses the same policy). */
  outboundPolicy: OutboundPolicy;
}

export function createServices(deps: ServiceDependencies): Services {
  const users = new UserService(deps.db, deps.clock, deps.notify);
  const apiKeys = new ApiKeyService(deps.db, deps.clock, deps.notify);
  const throttle = new LoginThrottle(deps.counters, deps.clock);
  const auth = new AuthService(deps.db, users, apiKeys, throttle, deps.mailer, deps.auth, deps.clock, deps.logger);
  const jobs = new JobService(deps.engine, deps.jobTypes, deps.jobLimits, deps.hub);
  const schedules = new ScheduleService(deps.db, jobs, deps.clock);
  const webhooks = new WebhookService(deps.db, deps.clock, deps.outboundPolicy);
  return { users, apiKeys, auth, jobs, queues: new QueueService(deps.engine), schedules, scheduleStore: new ScheduleStore(deps.db), webhooks };
}
