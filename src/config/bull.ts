import type { Redis } from 'ioredis';
import { Queue, Worker, type JobsOptions } from 'bullmq';

/**
 * BullMQ as the BullMQ engine uses it: one BullMQ queue per Jobline queue and job type, carrying
 * dispatch tickets (the job itself lives in PostgreSQL). Queues share one connection; each
 * worker (manual mode: the engine fetches tickets itself) gets BullMQ's blocking connection too.
 */

/** BullMQ forbids ':' in queue names; Jobline queue and type names may hold it. */
export function bullQueueName(queue: string, type: string): string {
  return `${encodeURIComponent(queue)}~${encodeURIComponent(type)}`;
}

/** BullMQ's prefix for a Jobline prefix: `jobline:` → `jobline:bull` (keys `jobline:bull:<queue>:<id>`). */
export function bullPrefix(redisPrefix: string): string {
  return `${redisPrefix}bull`;
}

/** The Redis key of a BullMQ job hash, for existence checks without loading the job. */
export function bullJobKey(redisPrefix: string, queueName: string, ticketId: string): string {
  return `${bullPrefix(redisPrefix)}:${queueName}:${ticketId}`;
}

/** BullMQ priorities run 1 (first) to 2^21; Jobline's run -1000…1000, higher first. Every ticket gets one, so all are ordered. */
export function bullPriority(priority: number): number {
  return 1001 - Math.max(-1000, Math.min(1000, priority)) + 1;
}

/** Tickets leave no trace in Redis once taken or abandoned. */
export const ticketOptions: JobsOptions = { removeOnComplete: true, removeOnFail: true, attempts: 1 };

export function createBullQueue(name: string, connection: Redis, redisPrefix: string): Queue {
  return new Queue(name, { connection, prefix: bullPrefix(redisPrefix), skipVersionCheck: true });
}

/**
 * A worker that never runs a processor: the engine takes tickets with getNextJob. A ticket's
 * lock only covers the instant between taking and removing it. A taker that dies in between
 * leaves it in BullMQ's active list: the reconciler drops and re-adds it when its job is still
 * waiting, and otherwise BullMQ's stalled check moves it back to the wait list, where the next
 * taker finds it stale and drops it.
 */
export function createBullWorker(name: string, connection: Redis, redisPrefix: string): Worker {
  return new Worker(name, null, {
    connection,
    prefix: bullPrefix(redisPrefix),
    autorun: false,
    // Held for the instant between taking and removing a ticket; a taker that died loses it soon.
    lockDuration: 5000,
    stalledInterval: 30_000,
    maxStalledCount: 0,
    skipVersionCheck: true,
  });
}
