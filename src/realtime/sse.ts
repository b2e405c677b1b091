import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../access/principal.js';
import type { RealtimeMetrics } from '../config/metrics.js';
import { FINISHED_STATES } from '../engine/types.js';
import type { JobService } from '../services/jobService.js';
import type { LiveSessions } from './sessions.js';

/**
 * GET /v1/jobs/:id/events as Server-Sent Events: `id:` is the seq, `event:` the type, `data:` the
 * event. Replays after `fromSeq` at the client's pace, continues live, pings every 15 s, ends after
 * the job's final event, and ends (saying why) when the caller's credentials stop working.
 */

const SSE_PING_MS = 15_000;
/** Replay waits for a client whose stream holds more than this unsent. */
const SSE_REPLAY_HIGH_WATER_BYTES = 256 * 1024;
/** A client this far behind on live events is dropped (it reconnects and replays). */
const SSE_MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

/** Resolves when the stream has sent what it held, or has closed. */
function drained(stream: NodeJS.WritableStream & { destroyed: boolean }): Promise<void> {
  if (stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

export interface EventStreamRequest {
  request: FastifyRequest;
  reply: FastifyReply;
  principal: Principal;
  jobId: string;
  /** The seq the client has (the `fromSeq` query or the Last-Event-ID header). */
  fromSeq: number;
  jobs: JobService;
  metrics: RealtimeMetrics;
  sessions: LiveSessions;
  /** Open streams' end functions: the server ends them all when it shuts down. */
  streams: Set<() => void>;
}

export async function streamJobEvents(options: EventStreamRequest): Promise<void> {
  const { request, reply, principal, jobId, jobs, metrics, sessions, streams } = options;
  const requestedSeq = options.fromSeq;
  const job = await jobs.visibleJob(principal, jobId);
  // A seq past the job's last event (a client's mistake) would wait for events that never come.
  const fromSeq = Math.min(requestedSeq, job.lastSeq);
  // Nothing more will ever come: 204 tells an EventSource to stop reconnecting.
  if (FINISHED_STATES.includes(job.state) && fromSeq >= job.lastSeq) return void reply.code(204).send(null);
  const raw = reply.hijack().raw;
  raw.writeHead(200, {
    // What the hooks set (CORS, security headers) would be lost with the hijack: carried over.
    ...Object.fromEntries(Object.entries(reply.getHeaders()).filter(([, value]) => value !== undefined)),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    'x-request-id': String(request.id),
  });
  raw.write('retry: 2000\n\n');
  metrics.subscriptions(1);
  let open = true;
  let follower: { close(): void } | null = null;
  let release: () => void = () => undefined;
  const ping = setInterval(() => raw.write(': ping\n\n'), SSE_PING_MS);
  const end = () => {
    if (!open) return;
    open = false;
    clearInterval(ping);
    follower?.close();
    streams.delete(end);
    release();
    metrics.subscriptions(-1);
    raw.end();
  };
  // Credentials that stop working (expired, revoked, sessions ended) end the stream, saying why.
  const credential = /^Bearer\s+(\S+)/i.exec(request.headers.authorization ?? '')?.[1] ?? null;
  release = sessions.add(principal, credential, (reason) => {
    if (open) raw.write(`event: session.ended\ndata: ${JSON.stringify(reason)}\n\n`);
    end();
  });
  streams.add(end);
  raw.on('close', end);
  // The client may have gone before the listener was attached: 'close' would never come.
  if (raw.destroyed) end();
  try {
    follower = await jobs.follow(principal, jobId, fromSeq, {
      event: (event) => {
        if (!open) return;
        raw.write(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
        metrics.sent(1, 'sse');
        // A client that cannot keep up with live events is let go: it reconnects with
        // Last-Event-ID and replays, paced, from what it actually received.
        if (raw.writableLength > SSE_MAX_BUFFERED_BYTES) {
          request.log.warn({ jobId, buffered: raw.writableLength }, 'event stream client too slow; closing its stream');
          raw.destroy();
        }
      },
      // Replay reads the next page only once the client has taken most of the last one.
      ready: () => (raw.writableLength > SSE_REPLAY_HIGH_WATER_BYTES && open ? drained(raw) : undefined),
      end,
    });
  } catch (error) {
    request.log.error({ err: error }, 'event stream failed');
    end();
    return;
  }
  // The stream may have ended (client gone, job already finished) before follow() returned.
  if (!open) follower.close();
}
