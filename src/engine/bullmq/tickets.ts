import { randomUUID } from 'node:crypto';
import type { JobRow } from '../rows.js';

/**
 * Tickets and lease tokens of the BullMQ engine. A ticket is a runnable job as BullMQ carries
 * it; its id is `<jobId>-<seq>`, seq the job's last event when it became runnable, so a ticket
 * of an older state of the job is recognised as stale and dropped.
 */
export interface Ticket {
  jobId: string;
  seq: number;
  queue: string;
  type: string;
  priority: number;
  runAt: number;
}

export function ticketId(ticket: Pick<Ticket, 'jobId' | 'seq'>): string {
  return `${ticket.jobId}-${ticket.seq}`;
}

export function parseTicketId(id: string): { jobId: string; seq: number } | null {
  const dash = id.lastIndexOf('-');
  const seq = Number(id.slice(dash + 1));
  if (dash <= 0 || !Number.isInteger(seq)) return null;
  return { jobId: id.slice(0, dash), seq };
}

export function ticketOf(row: Pick<JobRow, 'id' | 'last_seq' | 'queue' | 'type' | 'priority' | 'run_at'>): Ticket {
  return { jobId: row.id, seq: row.last_seq, queue: row.queue, type: row.type, priority: row.priority, runAt: Number(row.run_at) };
}

/** A lease token names the engine instance that took it, so others can tell whose leases a gone instance left. */
export function newLeaseToken(instanceId: string): string {
  return `${instanceId}.${randomUUID()}`;
}

/** The engine instance that took a lease (the part of its token before the dot). */
export function leaseInstance(token: string): string {
  return token.slice(0, token.indexOf('.'));
}
