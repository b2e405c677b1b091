import type { Migration } from 'kysely';
import * as accounts from './0001_accounts.js';
import * as jobs from './0002_jobs.js';

/** Append-only: a released migration is never edited; a change is a new, higher-numbered entry. */
export const migrations: Record<string, Migration> = {
  '0001_accounts': accounts,
  '0002_jobs': jobs,
};
