import type { Server, Socket } from 'socket.io';
import type { RealtimeMetrics } from '../config/metrics.js';
import { z } from 'zod';
import type { JobEvent } from '../engine/types.js';
import type { Principal } from '../access/principal.js';
import type { JobService } from '../services/jobService.js';
import { hasScope } from '../access/scopes.js';
import { toPublicEvent } from '../wire/jobs.js';
import { AppError, errors, toError } from '../utils/errors.js';
import { isFinalEvent, type JobEventHub } from './hub.js';
import type { LiveSessions } from './sessions.js';

/**
 * Socket.IO subscriptions: a job (replay after `fromSeq`, then live), a queue (admins), or all
 * of one's jobs (every job for an admin). Live events reach sockets through rooms, so each event
 * is encoded once however many sockets follow it.
 */

type SocketMetrics = RealtimeMetrics;

interface SocketState {
  principal: Principal;
  /**
   * Job subscriptions still replaying, by job id. While one replays (unbatched), the socket is in
   * the job's replay room, which live broadcasts skip: the replay delivers those events itself,
   * so a socket also in a queue, owner or `all` room does not get them twice.
   */
  replaying: Map<string, { close(): void }>;
  /**
   * Job subscribe requests still reading their job, by job id: the latest request's ticket
   * (bumped by a later subscribe or unsubscribe, synchronously) and how many are under way. A
   * request starts its replay only if no later one superseded it. Emptied as requests finish.
   */
  requests: Map<string, { latest: number; pending: number }>;
  /** The last ticket handed out. */
  tickets: number;
  /** Subscribe requests under way, all jobs together: they count against the limit. */
  pending: number;
  rooms: Set<string>;
}

const jobTarget = z.object({ jobId: z.uuid(), fromSeq: z.number().int().min(0).optional(), batch: z.boolean().optional() }).strict();
const queueTarget = z.object({ queue: z.string().min(1).max(200) }).strict();
const allTarget = z.object({ all: z.literal(true) }).strict();
const target = z.union([jobTarget, queueTarget, allTarget]);
type Target = z.infer<typeof target>;
type Ack = (answer: Record<string, unknown>) => void;

export interface SocketEventsDependencies {
  io: Server;
  hub: JobEventHub;
  /** Ends a socket whose credentials stop working. */
  sessions: LiveSessions;
  jobs: JobService;
  metrics: SocketMetrics;
}

/** Subscriptions one socket may hold: each costs the server memory and work per event. */
export const MAX_SUBSCRIPTIONS_PER_SOCKET = 1000;

/** Events per `job.events` message, at most. */
const BATCH_LIMIT = 1000;

type PublicEventList = ReturnType<typeof toPublicEvent>[];

/**
 * Where each job room (`job:<id>`, `batch:<id>`) stands in its job's event sequence: its members
 * have every event up to it. The bus may lose events (a Redis connection lapses) or deliver them
 * after the store has them, so:
 * - an event that skips ahead of the room sends the members that missed events back to replay
 *   from storage (they rejoin once caught up), and so does the bus resuming after a lapse;
 * - a socket that joins ahead of the room (it read from storage what the bus has not delivered
 *   yet) is left out of the room's sends until the room reaches its seq.
 */
class JobRooms {
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
class BatchRooms {
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

export function attachSocketEvents(deps: SocketEventsDependencies): () => void {
  const { io, hub, metrics } = deps;
  const states = new Map<string, { socket: Socket; state: SocketState }>();
  const rooms = new JobRooms(io, (socketId, room, afterSeq) => {
    const member = states.get(socketId);
    if (!member) return;
    const { socket, state } = member;
    const batched = room.startsWith('batch:');
    const jobId = room.slice(room.indexOf(':') + 1);
    // Whatever the room gathered this tick, the member has its share of before it leaves.
    if (batched) batches.flush(room);
    state.rooms.delete(room);
    void socket.leave(room);
    followJob(context, socket, state, { jobId, batched, startAfter: afterSeq });
  });
  /** A job subscription ends after the job's final event, as an event stream does: its members leave the room. */
  const finished = (room: string) => {
    for (const id of [...(io.of('/').adapter.rooms.get(room) ?? [])]) {
      const member = states.get(id);
      if (!member?.state.rooms.delete(room)) continue;
      rooms.left(id, room);
      void member.socket.leave(room);
      metrics.subscriptions(-1);
    }
  };
  const batches = new BatchRooms(io, rooms, metrics, finished);
  const context: FollowContext = { ...deps, batches, rooms };
  const stopEvents = hub.onEvent((event) => {
    broadcast(io, rooms, event, metrics);
    if (isFinalEvent(event)) finished(`job:${event.jobId}`);
    batches.add(`batch:${event.jobId}`, event);
  });
  const stopResume = hub.onResume(() => rooms.resume());

  io.on('connection', (socket) => {
    const state: SocketState = {
      principal: socket.data.principal as Principal,
      replaying: new Map(),
      requests: new Map(),
      tickets: 0,
      pending: 0,
      rooms: new Set(),
    };
    states.set(socket.id, { socket, state });
    metrics.connected(1);
    const credential = typeof socket.data.credential === 'string' ? socket.data.credential : null;
    const release = deps.sessions.add(state.principal, credential, (reason) => {
      socket.emit('session.ended', reason);
      socket.disconnect(true);
    });
    socket.on('subscribe', (raw: unknown, ack?: unknown) => {
      void subscribe(context, socket, state, raw).then(
        ({ answer, afterAck }) => {
          // The ack (with the snapshot) goes out before any replayed event.
          reply(ack, answer);
          afterAck?.();
        },
        (error: unknown) => reply(ack, failure(error)),
      );
    });
    socket.on('unsubscribe', (raw: unknown, ack?: unknown) => {
      const parsed = target.safeParse(raw);
      if (!parsed.success) return reply(ack, failure(errors.validation('Unsubscribe from {jobId}, {queue} or {all: true}.')));
      leave(context, socket, state, parsed.data);
      reply(ack, { ok: true });
    });
    socket.on('disconnect', () => {
      release();
      states.delete(socket.id);
      for (const room of state.rooms) rooms.left(socket.id, room);
      for (const follower of state.replaying.values()) follower.close();
      metrics.subscriptions(-(state.rooms.size + state.replaying.size));
      metrics.connected(-1);
    });
  });

  return () => {
    stopEvents();
    stopResume();
  };
}

interface Subscribed {
  answer: Record<string, unknown>;
  /** Runs after the ack is sent. */
  afterAck?: () => void;
}

type FollowContext = SocketEventsDependencies & { batches: BatchRooms; rooms: JobRooms };

async function subscribe(context: FollowContext, socket: Socket, state: SocketState, raw: unknown): Promise<Subscribed> {
  const parsed = target.safeParse(raw);
  if (!parsed.success) {
    throw errors.validation('Subscribe to {jobId, fromSeq?}, {queue} or {all: true}.', parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })));
  }
  const { principal } = state;
  // What the HTTP API asks of reading jobs: an API key needs the jobs:read scope.
  if (!hasScope(principal.scopes, 'jobs:read')) throw errors.insufficientScope('jobs:read');
  const subscription = parsed.data;
  if ('queue' in subscription) {
    if (principal.role !== 'admin') throw errors.forbidden('Only administrators may follow a whole queue.');
    joinWithin(socket, state, `queue:${subscription.queue}`, context.metrics);
    return { answer: { ok: true } };
  }
  if ('all' in subscription) {
    joinWithin(socket, state, principal.role === 'admin' ? 'all' : `owner:${principal.userId}`, context.metrics);
    return { answer: { ok: true } };
  }
  return subscribeToJob(context, socket, state, subscription);
}

function subscriptionCount(state: SocketState): number {
  return state.rooms.size + state.replaying.size;
}

/** Joins a queue or all-jobs room, within the socket's limit (joining again is a no-op). */
function joinWithin(socket: Socket, state: SocketState, room: string, metrics: SocketMetrics): void {
  if (state.rooms.has(room)) return;
  if (subscriptionCount(state) >= MAX_SUBSCRIPTIONS_PER_SOCKET) throw errors.tooManySubscriptions(MAX_SUBSCRIPTIONS_PER_SOCKET);
  join(socket, state, room, metrics);
}

async function subscribeToJob(
  context: FollowContext,
  socket: Socket,
  state: SocketState,
  subscription: { jobId: string; fromSeq?: number | undefined; batch?: boolean | undefined },
): Promise<Subscribed> {
  const { jobId } = subscription;
  leave(context, socket, state, { jobId });
  // Requests still reading their job count too: a burst of subscribes cannot slip past the limit.
  if (subscriptionCount(state) + state.pending >= MAX_SUBSCRIPTIONS_PER_SOCKET) throw errors.tooManySubscriptions(MAX_SUBSCRIPTIONS_PER_SOCKET);
  const request = beginRequest(state, jobId);
  let job: Awaited<ReturnType<JobService['visibleJob']>>;
  try {
    job = await context.jobs.visibleJob(state.principal, jobId);
  } catch (error) {
    request.end();
    throw error;
  }
  const snapshot = { state: job.state, progress: job.progress, result: job.result, error: job.error, lastSeq: job.lastSeq };
  const start = () => {
    // Superseded by a later subscribe or unsubscribe of this job, or the socket is gone.
    if (!request.end() || socket.disconnected) return;
    context.metrics.subscriptions(1);
    // Without fromSeq the client has the snapshot and wants what follows it.
    followJob(context, socket, state, { jobId, batched: subscription.batch === true, startAfter: subscription.fromSeq ?? job.lastSeq });
  };
  return { answer: { ok: true, snapshot }, afterAck: start };
}

/** A job subscribe request under way; `end()` says whether it is still the job's latest. */
function beginRequest(state: SocketState, jobId: string): { end(): boolean } {
  let entry = state.requests.get(jobId);
  if (!entry) {
    entry = { latest: 0, pending: 0 };
    state.requests.set(jobId, entry);
  }
  const ticket = (entry.latest = ++state.tickets);
  entry.pending += 1;
  state.pending += 1;
  const current = entry;
  return {
    end: () => {
      current.pending -= 1;
      state.pending -= 1;
      if (current.pending === 0) state.requests.delete(jobId);
      return current.latest === ticket;
    },
  };
}

/**
 * Listens first, then reads: the hub buffers live events while stored ones replay, and the
 * socket joins the job's room only once it has caught up (synchronously, so nothing slips by).
 * Counted as a subscription by the caller.
 */
function followJob(context: FollowContext, socket: Socket, state: SocketState, options: { jobId: string; batched: boolean; startAfter: number }): void {
  const { jobId, batched } = options;
  const room = batched ? `batch:${jobId}` : `job:${jobId}`;
  if (!batched) void socket.join(replayRoom(jobId));
  let replayed: PublicEventList = [];
  /** The last event delivered ended the job: the subscription is done once caught up. */
  let ended = false;
  const sendReplayed = () => {
    for (let first = 0; first < replayed.length; first += BATCH_LIMIT) socket.emit('job.events', replayed.slice(first, first + BATCH_LIMIT));
    context.metrics.sent(replayed.length);
    replayed = [];
  };
  const follower = context.hub.follow({
    jobId,
    fromSeq: options.startAfter,
    deliver: (event) => {
      ended = isFinalEvent(event);
      if (batched) {
        replayed.push(toPublicEvent(event));
        if (replayed.length >= BATCH_LIMIT) sendReplayed();
        return;
      }
      socket.emit(event.type, toPublicEvent(event));
      context.metrics.sent(1);
    },
    caughtUp: (lastSeq) => {
      stopReplay(socket, state, jobId);
      if (!socket.connected) return;
      if (batched) {
        sendReplayed();
        // What the room gathered so far this tick, this socket already has: send it to the others first.
        context.batches.flush(room);
      }
      if (ended) {
        context.metrics.subscriptions(-1);
        return;
      }
      join(socket, state, room, context.metrics, false);
      context.rooms.joined(socket.id, room, lastSeq);
    },
    onError: () => {
      follower.close();
      if (state.replaying.get(jobId) === follower) {
        stopReplay(socket, state, jobId);
        context.metrics.subscriptions(-1);
      }
      socket.emit('subscription.failed', { jobId, code: 'JOBLINE_INTERNAL' });
    },
  });
  state.replaying.set(jobId, follower);
}

function replayRoom(jobId: string): string {
  return `replay:${jobId}`;
}

/** Ends a job's replay, if one runs: from now on live broadcasts of the job reach the socket again. */
function stopReplay(socket: Socket, state: SocketState, jobId: string): boolean {
  const follower = state.replaying.get(jobId);
  if (!follower) return false;
  follower.close();
  state.replaying.delete(jobId);
  void socket.leave(replayRoom(jobId));
  return true;
}

function join(socket: Socket, state: SocketState, room: string, metrics: SocketMetrics, count = true): void {
  if (state.rooms.has(room)) return;
  void socket.join(room);
  state.rooms.add(room);
  if (count) metrics.subscriptions(1);
}

function leave(context: FollowContext, socket: Socket, state: SocketState, subscription: Target): void {
  const { metrics } = context;
  const quit = (room: string) => {
    if (!state.rooms.delete(room)) return;
    context.rooms.left(socket.id, room);
    void socket.leave(room);
    metrics.subscriptions(-1);
  };
  if ('jobId' in subscription) {
    // A subscribe request of this job still under way is superseded.
    const request = state.requests.get(subscription.jobId);
    if (request) request.latest = ++state.tickets;
    quit(`batch:${subscription.jobId}`);
    if (stopReplay(socket, state, subscription.jobId)) metrics.subscriptions(-1);
    quit(`job:${subscription.jobId}`);
  } else if ('queue' in subscription) {
    quit(`queue:${subscription.queue}`);
  } else {
    quit(state.principal.role === 'admin' ? 'all' : `owner:${state.principal.userId}`);
  }
}

/**
 * One broadcast per event to every room that wants it; a socket in several rooms gets it once, a
 * socket replaying the job gets it from its replay instead, and one that joined the job's room
 * ahead of it is not sent what it has.
 */
function broadcast(io: Server, rooms: JobRooms, event: JobEvent, metrics: SocketMetrics): void {
  const targets = [`job:${event.jobId}`, `queue:${event.queue}`, `owner:${event.ownerId}`, 'all'];
  const except = [replayRoom(event.jobId), ...rooms.sending(`job:${event.jobId}`, event.seq)];
  const reached = countMembers(io, targets, except);
  if (reached === 0) return;
  io.local.to(targets).except(except).emit(event.type, toPublicEvent(event));
  metrics.sent(reached);
}

/** Sockets in the union of the rooms but in none of `except` (socket ids are rooms too); counted exactly only when it matters. */
function countMembers(io: Server, rooms: string[], except: string[]): number {
  const { rooms: all } = io.of('/').adapter;
  const populated = rooms.map((room) => all.get(room)).filter((members) => members !== undefined && members.size > 0);
  const excluded = except.map((room) => all.get(room)).filter((members) => members !== undefined && members.size > 0);
  if (populated.length <= 1 && excluded.length === 0) return populated[0]?.size ?? 0;
  const union = new Set<string>();
  for (const members of populated) for (const id of members ?? []) if (!excluded.some((set) => set?.has(id))) union.add(id);
  return union.size;
}

function reply(ack: unknown, answer: Record<string, unknown>): void {
  if (typeof ack === 'function') (ack as Ack)(answer);
}

function failure(thrown: unknown): Record<string, unknown> {
  const error = thrown instanceof AppError ? thrown : errors.internal(toError(thrown));
  return { ok: false, error: { code: error.code, message: error.message, status: error.status } };
}
