import type { Server } from 'socket.io';
import type { RealtimeMetrics as SocketMetrics } from '../config/metrics.js';
import type { JobEvent } from '../engine/types.js';
import { isFinalEvent } from '../events/hub.js';
import { toPublicEvent } from '../wire/jobs.js';

/** Socket.IO rooms for job subscriptions: where each room stands in its job's events, and batched sends. */

/** Events per `job.events` message, at most. */
export const BATCH_LIMIT = 1000;

export type PublicEventList = ReturnType<typeof toPublicEvent>[];

/**
 * Where each job room (`job:<id>`, `batch:<id>`) stands in its job's event sequence: its members
 * have every event up to it. The bus may lose events (a Redis connection lapses) or deliver them
 * after the store has them, so:
 * - an event that skips ahead of the room sends the members that missed events back to replay
 *   from storage (they rejoin once caught up), and so does the bus resuming after a lapse;
 * - a socket that joins ahead of the room (it read from storage what the bus has not delivered
 *   yet) is left out of the room's sends until the room reaches its seq.
 */
export class JobRooms {
  private readonly seqs = new Map<string, number>();
  /** By room: the members ahead of it, with the seq up to which they already have the events. */
  private readonly ahead = new Map<string, Map<string, number>>();

  constructor(
    private readonly io: Server,
    /** Sends a member back to replay the room's job after `afterSeq`; it leaves the room at once. */
    private readonly replay: (socketId: string, room: string, afterSeq: number) => void,
  ) {
    io.of('/').adapter.on('delete-room', (room: string) => {
      this.seqs.delete(room);
      this.ahead.delete(room);
    });
  }

  /** Before an event goes to a room: returns the members that already have it (leave them out). */
  sending(room: string, seq: number): string[] {
    if (this.size(room) === 0) return [];
    const last = this.seqs.get(room);
    const ahead = this.ahead.get(room);
    if (last !== undefined && seq > last + 1) {
      for (const id of [...this.members(room)]) {
        const has = Math.max(last, ahead?.get(id) ?? 0);
        if (has >= seq - 1) continue;
        ahead?.delete(id);
        this.replay(id, room, has);
      }
      if (this.size(room) === 0) return [];
    }
    this.seqs.set(room, Math.max(last ?? 0, seq));
    const already: string[] = [];
    for (const [id, has] of ahead ?? []) {
      if (seq <= has) already.push(id);
      if (seq >= has) ahead?.delete(id);
    }
    return already;
  }

  /** A member joined, having every event up to `lastSeq`. */
  joined(socketId: string, room: string, lastSeq: number): void {
    const last = this.seqs.get(room);
    if (last === undefined || this.size(room) <= 1) {
      this.seqs.set(room, lastSeq);
    } else if (lastSeq > last) {
      let ahead = this.ahead.get(room);
      if (!ahead) {
        ahead = new Map();
        this.ahead.set(room, ahead);
      }
      ahead.set(socketId, lastSeq);
    } else if (lastSeq < last) {
      // Behind the room (not expected: a caught-up replay has all the bus delivered): replay the rest.
      this.replay(socketId, room, lastSeq);
    }
  }

  left(socketId: string, room: string): void {
    this.ahead.get(room)?.delete(socketId);
  }

  /** After the bus lost events for a while: every member replays what its room may have missed. */
  resume(): void {
    for (const [room, last] of [...this.seqs]) {
      const ahead = this.ahead.get(room);
      for (const id of [...this.members(room)]) this.replay(id, room, Math.max(last, ahead?.get(id) ?? 0));
    }
  }

  private members(room: string): Set<string> {
    return this.io.of('/').adapter.rooms.get(room) ?? new Set();
  }

  private size(room: string): number {
    return this.io.of('/').adapter.rooms.get(room)?.size ?? 0;
  }
}

/**
 * Batched job subscriptions (`batch: true`) get `job.events` messages holding arrays of events,
 * gathered for a tick: a stream of thousands of deltas a second becomes a few hundred messages.
 */
export class BatchRooms {
  /** By room: runs of events, each to go to every member but the ones that already have them. */
  private readonly pending = new Map<string, { except: string[]; events: PublicEventList }[]>();
  private scheduled = false;

  constructor(
    private readonly io: Server,
    private readonly rooms: JobRooms,
    private readonly metrics: SocketMetrics,
    /** The room's job has ended: its members are done with it. */
    private readonly finished: (room: string) => void,
  ) {}

  add(room: string, event: JobEvent): void {
    const except = this.rooms.sending(room, event.seq);
    if ((this.io.of('/').adapter.rooms.get(room)?.size ?? 0) === 0) return;
    let runs = this.pending.get(room);
    if (!runs) {
      runs = [];
      this.pending.set(room, runs);
    }
    const run = runs.at(-1);
    if (run && sameMembers(run.except, except)) run.events.push(toPublicEvent(event));
    else runs.push({ except, events: [toPublicEvent(event)] });
    if (isFinalEvent(event)) {
      this.flush(room);
      this.finished(room);
      return;
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flushAll());
    }
  }

  /** Sends what a room has gathered to its members now (before a member joins or leaves, so it gets exactly its share). */
  flush(room: string): void {
    const runs = this.pending.get(room);
    if (!runs) return;
    this.pending.delete(room);
    const members = this.io.of('/').adapter.rooms.get(room)?.size ?? 0;
    for (const { except, events } of runs) {
      for (let start = 0; start < events.length; start += BATCH_LIMIT) {
        this.io.local.to(room).except(except).emit('job.events', events.slice(start, start + BATCH_LIMIT));
      }
      this.metrics.sent(events.length * Math.max(0, members - except.length));
    }
  }

  private flushAll(): void {
    this.scheduled = false;
    for (const room of [...this.pending.keys()]) this.flush(room);
  }
}

function sameMembers(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((id, index) => id === b[index]);
}

