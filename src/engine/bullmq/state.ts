import type { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../../db/schema.js';
import type { Clock } from '../../utils/clock.js';
import { randomToken } from '../../utils/ids.js';
import { DEFAULT_MAX_CRASHES } from '../lifecycle.js';
import { Listeners } from '../listeners.js';
import type { RetentionPolicy } from '../types.js';

export interface BullMqEngineOptions {
  /** PostgreSQL: the records, the source of truth. */
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  retention: RetentionPolicy;
  /** Prefix of every Redis key and channel. */
  prefix: string;
  /** Redis connections the engine owns and closes: BullMQ's (no command deadline), request-time commands, and a subscriber. */
  redis: { bull: Redis; commands: Redis; subscriber: Redis };
  maxCrashes?: number;
  sweepIntervalMs?: number;
  /** How often every waiting job's ticket is checked (a process may have died between commit and enqueue). */
  reconcileIntervalMs?: number;
}

/** What the parts of one BullMQ engine instance (port, transactions, signals, liveness, sweeps) share. */
export class InstanceState {
  readonly instanceId = randomToken(8);
  readonly paused = new Set<string>();
  readonly listeners: Listeners;
  readonly maxCrashes: number;
  /** Counts pause changes made or heard, so a sweep's re-read never overwrites a newer one. */
  pausedVersion = 0;
  running = false;
  /** Tickets may be missing now (an enqueue failed, an instance died, Redis lost its data): reconcile at the next sweep. */
  reconcileWanted = true;
  /** When Redis last failed us; instances are not judged dead by missing heartbeats soon after. */
  lastRedisTroubleAt = 0;

  constructor(readonly options: BullMqEngineOptions) {
    this.listeners = new Listeners(options.logger, this.paused);
    this.maxCrashes = options.maxCrashes ?? DEFAULT_MAX_CRASHES;
  }

  get redis(): BullMqEngineOptions['redis'] {
    return this.options.redis;
  }

  get logger(): Logger {
    return this.options.logger;
  }

  now(): number {
    return this.options.clock.now();
  }

  /** A Redis key (or channel) of the engine, under the prefix. */
  key(name: string): string {
    return `${this.options.prefix}engine:${name}`;
  }

  redisTrouble(): void {
    this.lastRedisTroubleAt = this.now();
  }

  setPaused(queue: string, paused: boolean): void {
    this.pausedVersion += 1;
    if (paused) this.paused.add(queue);
    else this.paused.delete(queue);
  }
}

/** Waits for `promise` at most `ms`: true if it settled in time (its rejection is passed on), false otherwise. */
export async function within(ms: number, promise: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
