import type { Server, Socket } from 'socket.io';
import type { RealtimeMetrics } from '../config/metrics.js';
import { z } from 'zod';
import type { JobEvent } from '../engine/types.js';
import type { Principal } from '../services/authService.js';
import type { JobService } from '../services/jobService.js';
import { hasScope } from '../services/scopes.js';
import { toPublicEvent } from '../services/jobService.js';
import { AppError, errors, toError } from '../utils/errors.js';
import type { JobEventHub } from './hub.js';
import type { LiveSessions } from './sessions.js';

/**
 * Socket.IO subscriptions: a job (replay after `fromSeq`, then live), a queue (admins), or all
 * of one's jobs (every job for an admin). Live events reach sockets through rooms, so each event
 * is encoded once however many sockets follow it.
 */

type SocketMetrics = RealtimeMetrics;

interface SocketState {
  principal: Principal;
  /** Job subscriptions still replaying, by job id. */
  replaying: Map<string, { close(): void }>;
  /**
   * Bumped by every subscribe and unsubscribe of a job, synchronously: a subscription whose
   * replay has not started yet starts only if no later request superseded it.
   */
  generations: Map<string, number>;
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

/** Events per `job.events` message, at most. */
const BATCH_LIMIT = 1000;

/**
 * Batched job subscriptions (`batch: true`) get `job.events` messages holding arrays of events,
 * gathered for a tick: a stream of thousands of deltas a second becomes a few hundred messages.
 */
class BatchRooms {
  private readonly pending = new Map<string, PublicEventList>();
  private scheduled = false;

  constructor(
    private readonly io: Server,
    private readonly metrics: SocketMetrics,
  ) {}

  add(room: string, event: JobEvent): void {
    const members = this.io.of('/').adapter.rooms.get(room)?.size ?? 0;
    if (members === 0) return;
    let list = this.pending.get(room);
    if (!list) {
      list = [];
      this.pending.set(room, list);
    }
    list.push(toPublicEvent(event));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flushAll());
    }
  }

  /** Sends what a room has gathered to its members now (before a new member joins, so it gets none of it). */
  flush(room: string): void {
    const list = this.pending.get(room);
    if (!list) return;
    this.pending.delete(room);
    const members = this.io.of('/').adapter.rooms.get(room)?.size ?? 0;
    for (let start = 0; start < list.length; start += BATCH_LIMIT) {
      this.io.local.to(room).emit('job.events', list.slice(start, start + BATCH_LIMIT));
    }
    this.metrics.sent(list.length * members);
  }

  private flushAll(): void {
    this.scheduled = false;
    for (const room of [...this.pending.keys()]) this.flush(room);
  }
}

type PublicEventList = ReturnType<typeof toPublicEvent>[];

export function attachSocketEvents(deps: SocketEventsDependencies): () => void {
  const { io, hub, metrics } = deps;
  const batches = new BatchRooms(io, metrics);
  const stopEvents = hub.onEvent((event) => {
    broadcast(io, event, metrics);
    batches.add(`batch:${event.jobId}`, event);
  });

  io.on('connection', (socket) => {
    const state: SocketState = {
      principal: socket.data.principal as Principal,
      replaying: new Map(),
      generations: new Map(),
      rooms: new Set(),
    };
    metrics.connected(1);
    const release = deps.sessions.add(state.principal, (reason) => {
      socket.emit('session.ended', reason);
      socket.disconnect(true);
    });
    socket.on('subscribe', (raw: unknown, ack?: unknown) => {
      void subscribe({ ...deps, batches }, socket, state, raw).then(
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
      leave(socket, state, parsed.data, metrics);
      reply(ack, { ok: true });
    });
    socket.on('disconnect', () => {
      release();
      for (const follower of state.replaying.values()) follower.close();
      metrics.subscriptions(-(state.rooms.size + state.replaying.size));
      metrics.connected(-1);
    });
  });

  return () => {
    stopEvents();
  };
}

interface Subscribed {
  answer: Record<string, unknown>;
  /** Runs after the ack is sent. */
  afterAck?: () => void;
}

type SubscribeDependencies = SocketEventsDependencies & { batches: BatchRooms };

async function subscribe(deps: SubscribeDependencies, socket: Socket, state: SocketState, raw: unknown): Promise<Subscribed> {
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
    join(socket, state, `queue:${subscription.queue}`, deps.metrics);
    return { answer: { ok: true } };
  }
  if ('all' in subscription) {
    join(socket, state, principal.role === 'admin' ? 'all' : `owner:${principal.userId}`, deps.metrics);
    return { answer: { ok: true } };
  }
  return subscribeToJob(deps, socket, state, subscription);
}

/**
 * Listens first, then reads: the hub buffers live events while stored ones replay, and the
 * socket joins the job's room only once it has caught up (synchronously, so nothing slips by).
 */
async function subscribeToJob(
  deps: SubscribeDependencies,
  socket: Socket,
  state: SocketState,
  subscription: { jobId: string; fromSeq?: number | undefined; batch?: boolean | undefined },
): Promise<Subscribed> {
  const { jobId } = subscription;
  leave(socket, state, { jobId }, deps.metrics);
  const generation = state.generations.get(jobId) ?? 0;
  const job = await deps.jobs.visibleJob(state.principal, jobId);
  const snapshot = { state: job.state, progress: job.progress, result: job.result, error: job.error, lastSeq: job.lastSeq };
  const batched = subscription.batch === true;
  const room = batched ? `batch:${jobId}` : `job:${jobId}`;
  // Without fromSeq the client has the snapshot and wants what follows it.
  const startAfter = subscription.fromSeq ?? job.lastSeq;
  const start = () => {
    // Superseded by a later subscribe or unsubscribe of this job, or the socket is gone.
    if (socket.disconnected || state.generations.get(jobId) !== generation) return;
    deps.metrics.subscriptions(1);
    let replayed: PublicEventList = [];
    const sendReplayed = () => {
      for (let first = 0; first < replayed.length; first += BATCH_LIMIT) socket.emit('job.events', replayed.slice(first, first + BATCH_LIMIT));
      deps.metrics.sent(replayed.length);
      replayed = [];
    };
    const follower = deps.hub.follow({
      jobId,
      fromSeq: startAfter,
      deliver: (event) => {
        if (batched) {
          replayed.push(toPublicEvent(event));
          if (replayed.length >= BATCH_LIMIT) sendReplayed();
          return;
        }
        socket.emit(event.type, toPublicEvent(event));
        deps.metrics.sent(1);
      },
      caughtUp: () => {
        follower.close();
        state.replaying.delete(jobId);
        if (!socket.connected) return;
        if (batched) {
          sendReplayed();
          // What the room gathered so far this tick, this socket already has: send it to the others first.
          deps.batches.flush(room);
        }
        join(socket, state, room, deps.metrics, false);
      },
      onError: () => {
        follower.close();
        if (state.replaying.get(jobId) === follower) {
          state.replaying.delete(jobId);
          deps.metrics.subscriptions(-1);
        }
        socket.emit('subscription.failed', { jobId, code: 'JOBLINE_INTERNAL' });
      },
    });
    state.replaying.set(jobId, follower);
  };
  return { answer: { ok: true, snapshot }, afterAck: start };
}

function join(socket: Socket, state: SocketState, room: string, metrics: SocketMetrics, count = true): void {
  if (state.rooms.has(room)) return;
  void socket.join(room);
  state.rooms.add(room);
  if (count) metrics.subscriptions(1);
}

function leave(socket: Socket, state: SocketState, subscription: Target, metrics: SocketMetrics): void {
  let room: string;
  if ('jobId' in subscription) {
    room = `job:${subscription.jobId}`;
    state.generations.set(subscription.jobId, (state.generations.get(subscription.jobId) ?? 0) + 1);
    if (state.rooms.delete(`batch:${subscription.jobId}`)) {
      void socket.leave(`batch:${subscription.jobId}`);
      metrics.subscriptions(-1);
    }
    const follower = state.replaying.get(subscription.jobId);
    if (follower) {
      follower.close();
      state.replaying.delete(subscription.jobId);
      metrics.subscriptions(-1);
    }
  } else if ('queue' in subscription) {
    room = `queue:${subscription.queue}`;
  } else {
    room = state.principal.role === 'admin' ? 'all' : `owner:${state.principal.userId}`;
  }
  if (state.rooms.delete(room)) {
    void socket.leave(room);
    metrics.subscriptions(-1);
  }
}

/** One broadcast per event to every room that wants it; a socket in several rooms gets it once. */
function broadcast(io: Server, event: JobEvent, metrics: SocketMetrics): void {
  const rooms = [`job:${event.jobId}`, `queue:${event.queue}`, `owner:${event.ownerId}`, 'all'];
  const reached = countMembers(io, rooms);
  if (reached === 0) return;
  io.local.to(rooms).emit(event.type, toPublicEvent(event));
  metrics.sent(reached);
}

/** Sockets in the union of the rooms (counted exactly only when more than one room has members). */
function countMembers(io: Server, rooms: string[]): number {
  const populated = rooms.map((room) => io.of('/').adapter.rooms.get(room)).filter((members) => members !== undefined && members.size > 0);
  if (populated.length <= 1) return populated[0]?.size ?? 0;
  const union = new Set<string>();
  for (const members of populated) for (const id of members ?? []) union.add(id);
  return union.size;
}

function reply(ack: unknown, answer: Record<string, unknown>): void {
  if (typeof ack === 'function') (ack as Ack)(answer);
}

function failure(thrown: unknown): Record<string, unknown> {
  const error = thrown instanceof AppError ? thrown : errors.internal(toError(thrown));
  return { ok: false, error: { code: error.code, message: error.message, status: error.status } };
}
