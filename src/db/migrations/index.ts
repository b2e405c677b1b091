import type { Migration } from 'kysely';
import * as accounts from './0001_accounts.js';
import * as jobs from './0002_jobs.js';
import * as webhooks from './0003_webhooks.js';
import * as schedules from './0004_schedules.js';
import * as outboxOrder from './0005_outbox_order.js';

/** Append-only: a released migration is never edited; a change is a new, higher-numbered entry. */
export const migrations: Record<string, Migration> = {
  '0001_accounts': accounts,
  '0002_jobs': jobs,
  '0003_webhooks': webhooks,
  '0004_schedules': schedules,
  '0005_outbox_order': outboxOrder,
};
