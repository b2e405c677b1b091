import type { Server, Socket } from 'socket.io';
import type { RealtimeMetrics } from '../config/metrics.js';
import { z } from 'zod';
import type { JobEvent } from '../engine/types.js';
import type { Principal } from '../access/principal.js';
import type { JobService } from '../services/jobService.js';
import { hasScope } from '../access/scopes.js';
import { toPublicEvent } from '../wire/jobs.js';
import { AppError, errors, toError } from '../utils/errors.js';
import { isFinalEvent, type JobEventHub } from '../events/hub.js';
import { BATCH_LIMIT, BatchRooms, JobRooms, type PublicEventList } from './rooms.js';
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
