import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { components } from './generated/api.js';
import { errorFromResponse, JoblineError } from './errors.js';
import { sleep, type Fetch } from './transport.js';

/**
 * Follows a job's events over Server-Sent Events as an async iterator: first what happened after
 * `fromSeq`, then live events, ending after the job's final event. When the stream breaks (a
 * server restart, a proxy, a lost network) it reconnects from the last seq it yielded, so the
 * caller sees every event once, in order: no gap, no duplicate.
 */

export type JobEvent = components['schemas']['JobEvent'];

export const FINAL_EVENT_TYPES: readonly string[] = ['job.completed', 'job.failed', 'job.cancelled'];

export interface FollowOptions {
  /** Yield only events after this seq (0: from the start). */
  fromSeq?: number;
  signal?: AbortSignal;
  /** Give up when the server stays unreachable this long (ms); default 5 minutes. */
  reconnectForMs?: number;
}

const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 5_000;

export async function* followJob(send: Fetch, baseUrl: string, jobId: string, options: FollowOptions = {}): AsyncGenerator<JobEvent, void, undefined> {
  let lastSeq = options.fromSeq ?? 0;
  let outageStarted: number | null = null;
  let delay = RECONNECT_FIRST_MS;
  const reconnectForMs = options.reconnectForMs ?? 300_000;
  while (!options.signal?.aborted) {
    let response: Response;
    try {
      response = await send(
        new Request(`${baseUrl}/v1/jobs/${encodeURIComponent(jobId)}/events?fromSeq=${lastSeq}`, {
          headers: { accept: 'text/event-stream' },
          ...(options.signal ? { signal: options.signal } : {}),
        }),
      );
    } catch (error) {
      if (options.signal?.aborted) return;
      if (!JoblineError.is(error, 'JOBLINE_UNREACHABLE')) throw error;
      outageStarted ??= Date.now();
      if (Date.now() - outageStarted > reconnectForMs) throw error;
      await sleep(delay, options.signal).catch(() => undefined);
      delay = Math.min(RECONNECT_MAX_MS, delay * 2);
      continue;
    }
    // 204: the job has ended and nothing comes after lastSeq.
    if (response.status === 204) return;
    if (!response.ok) throw await errorFromResponse(response);
    outageStarted = null;
    delay = RECONNECT_FIRST_MS;
    for await (const message of messages(response, options.signal)) {
      if (message.event === 'session.ended') break; // credentials changed: reconnecting checks them again
      if (message.id === undefined) continue;
      const seq = Number(message.id);
      if (!(seq > lastSeq)) continue;
      const event = JSON.parse(message.data) as JobEvent;
      lastSeq = seq;
      yield event;
      if (FINAL_EVENT_TYPES.includes(event.type)) return;
    }
    // The stream ended before the job did (a restart, a proxy's timeout): pause, then resume.
    await sleep(RECONNECT_FIRST_MS, options.signal).catch(() => undefined);
  }
}

/** The SSE messages of a response body, until it ends or breaks. */
async function* messages(response: Response, signal: AbortSignal | undefined): AsyncGenerator<EventSourceMessage> {
  const body = response.body;
  if (!body) return;
  const queue: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (message) => queue.push(message) });
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const cancel = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener('abort', cancel, { once: true });
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch {
        return; // the connection broke: the caller reconnects from its last seq
      }
      if (chunk.done) return;
      parser.feed(chunk.value);
      while (queue.length > 0) yield queue.shift()!;
    }
  } finally {
    signal?.removeEventListener('abort', cancel);
    cancel();
  }
}
