import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Server } from 'socket.io';
import { io as connect, type Socket as ClientSocket } from 'socket.io-client';
import type { JobEvent } from '../../src/engine/types.js';
import { JobEventHub } from '../../src/events/hub.js';
import { LiveSessions } from '../../src/realtime/sessions.js';
import { attachSocketEvents, MAX_SUBSCRIPTIONS_PER_SOCKET } from '../../src/realtime/socketEvents.js';
import type { Principal } from '../../src/access/principal.js';
import type { JobService } from '../../src/services/jobService.js';
import { ResumableBus } from '../helpers/bus.js';

const JOB_ID = '0a3e9a52-6c1e-4f7e-9d54-2f1b0c8e7d11';
const admin: Principal = { userId: 'u1', email: 'admin@example.com', role: 'admin', via: 'token', scopes: null, apiKeyId: null, expiresAt: null };

function event(seq: number, type: JobEvent['type'] = 'job.delta'): JobEvent {
  return { type, jobId: JOB_ID, seq, at: Date.now(), data: { text: String(seq) }, queue: 'default', ownerId: admin.userId };
}

interface Harness {
  url: string;
  bus: ResumableBus;
  stored: JobEvent[];
  releaseReads(): void;
  /** Stores an event; publishes it too unless the bus is to lose it. */
  commit(seq: number, options?: { publish?: boolean; type?: JobEvent['type'] }): void;
  /** The subscriptions gauge as the socket layer reports it. */
  subscriptions(): number;
  close(): Promise<void>;
}

/**
 * The socket layer alone, with a store whose reads wait until the test lets them go: live events
 * can arrive in the middle of a replay, as they do when the store is a network away.
 */
async function start(options: { gated?: boolean } = {}): Promise<Harness> {
  const http: HttpServer = createServer();
  const io = new Server(http, { serveClient: false });
  io.use((socket, next) => {
    socket.data.principal = admin;
    next();
  });
  const bus = new ResumableBus();
  const stored: JobEvent[] = [];
  let releaseReads: () => void = () => undefined;
  const readsReleased = new Promise<void>((resolve) => (releaseReads = resolve));
  if (!options.gated) releaseReads();
  const hub = new JobEventHub(bus, async (_jobId, afterSeq, limit) => {
    await readsReleased;
    return stored.filter((stored) => stored.seq > afterSeq).slice(0, limit);
  });
  const jobs = {
    visibleJob: async () => ({ state: 'active', progress: null, result: null, error: null, lastSeq: stored.length }),
  } as unknown as JobService;
  const sessions = new LiveSessions(bus, async () => undefined);
  let subscriptions = 0;
  const metrics = { connected: () => undefined, subscriptions: (delta: number) => (subscriptions += delta), sent: () => undefined };
  const detach = attachSocketEvents({ io, hub, sessions, jobs, metrics });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    bus,
    stored,
    releaseReads,
    commit: (seq, { publish = true, type } = {}) => {
      stored.push(event(seq, type));
      if (publish) bus.publishJobEvents([event(seq, type)]);
    },
    subscriptions: () => subscriptions,
    close: async () => {
      detach();
      sessions.close();
      hub.close();
      await io.close();
    },
  };
}

async function open(url: string): Promise<{ socket: ClientSocket; seqs: number[] }> {
  const socket = connect(url, { transports: ['websocket'], reconnection: false, forceNew: true });
  const seqs: number[] = [];
  socket.on('job.delta', (received: { seq: number }) => seqs.push(received.seq));
  socket.on('job.completed', (received: { seq: number }) => seqs.push(received.seq));
  socket.on('job.events', (batch: { seq: number }[]) => seqs.push(...batch.map((received) => received.seq)));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  return { socket, seqs };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('socket subscriptions that overlap', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  /** Two sockets following the job from its start, one batched, once they have replayed its `stored` events. */
  async function followers(url: string, stored: number): Promise<{ plain: Awaited<ReturnType<typeof open>>; batched: Awaited<ReturnType<typeof open>> }> {
    const plain = await open(url);
    const batched = await open(url);
    cleanups.push(() => void plain.socket.close(), () => void batched.socket.close());
    await subscribed(plain.socket, 0);
    await subscribed(batched.socket, 0, true);
    await until(() => plain.seqs.length === stored && batched.seqs.length === stored, 'the replays');
    return { plain, batched };
  }

  it('a socket in the all room that replays a job gets each of its events once, in order', async () => {
    const server = await start({ gated: true });
    cleanups.push(server.close);
    const publish = (seq: number) => server.commit(seq);
    for (let seq = 1; seq <= 10; seq += 1) server.stored.push(event(seq));
    const { socket, seqs } = await open(server.url);
    cleanups.push(() => void socket.close());
    expect(await socket.timeout(5000).emitWithAck('subscribe', { all: true })).toEqual({ ok: true });
    expect(await socket.timeout(5000).emitWithAck('subscribe', { jobId: JOB_ID, fromSeq: 0 })).toMatchObject({ ok: true });
    // Live events while the replay waits on the store.
    for (let seq = 11; seq <= 20; seq += 1) publish(seq);
    server.releaseReads();
    await until(() => seqs.includes(20), 'the replay');
    for (let seq = 21; seq <= 30; seq += 1) publish(seq);
    await until(() => seqs.includes(30), 'live events');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seqs).toEqual(Array.from({ length: 30 }, (_, index) => index + 1));
  });

  it('an unsubscribe in the middle of a replay gives the socket back to the all room', async () => {
    const server = await start();
    cleanups.push(server.close);
    const { socket, seqs } = await open(server.url);
    cleanups.push(() => void socket.close());
    expect(await socket.timeout(5000).emitWithAck('subscribe', { all: true })).toEqual({ ok: true });
    expect(await socket.timeout(5000).emitWithAck('subscribe', { jobId: JOB_ID, fromSeq: 0 })).toMatchObject({ ok: true });
    expect(await socket.timeout(5000).emitWithAck('unsubscribe', { jobId: JOB_ID })).toEqual({ ok: true });
    server.bus.publishJobEvents([event(1)]);
    await until(() => seqs.length === 1, 'the event through the all room');
    expect(seqs).toEqual([1]);
  });

  it('a socket that joins a job room ahead of it (storage before the bus) gets nothing twice', async () => {
    const server = await start();
    cleanups.push(server.close);
    for (let seq = 1; seq <= 10; seq += 1) server.commit(seq);
    const early = await open(server.url);
    cleanups.push(() => void early.socket.close());
    await subscribed(early.socket, 0);
    await until(() => early.seqs.length === 10, 'the early replay');
    // Stored, their messages still on the way.
    server.commit(11, { publish: false });
    server.commit(12, { publish: false });
    const late = await open(server.url);
    cleanups.push(() => void late.socket.close());
    await subscribed(late.socket, 0);
    await until(() => late.seqs.length === 12, 'the late replay');
    for (const seq of [11, 12]) server.bus.publishJobEvents([event(seq)]);
    server.commit(13);
    await until(() => early.seqs.includes(13) && late.seqs.includes(13), 'the next live event');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(early.seqs).toEqual(sequence(13));
    expect(late.seqs).toEqual(sequence(13));
  });

  it('members of a job room get an event the bus lost from storage, in order, when a later one arrives', async () => {
    const server = await start();
    cleanups.push(server.close);
    for (let seq = 1; seq <= 5; seq += 1) server.commit(seq);
    const { plain, batched } = await followers(server.url, 5);
    server.commit(6, { publish: false });
    server.commit(7);
    server.commit(8);
    await until(() => plain.seqs.includes(8) && batched.seqs.includes(8), 'the events after the lost one');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(plain.seqs).toEqual(sequence(8));
    expect(batched.seqs).toEqual(sequence(8));
  });

  it('members of a job room get what the bus lost during a lapse when it resumes, with no later event', async () => {
    const server = await start();
    cleanups.push(server.close);
    for (let seq = 1; seq <= 3; seq += 1) server.commit(seq);
    const { plain, batched } = await followers(server.url, 3);
    server.commit(4, { publish: false });
    server.commit(5, { publish: false });
    server.bus.resume();
    await until(() => plain.seqs.includes(5) && batched.seqs.includes(5), 'the lost events');
    server.commit(6);
    await until(() => plain.seqs.includes(6) && batched.seqs.includes(6), 'a live event after the repair');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(plain.seqs).toEqual(sequence(6));
    expect(batched.seqs).toEqual(sequence(6));
  });

  it('a job subscription ends after the job\'s final event, live or replayed, batched or not', async () => {
    const server = await start();
    cleanups.push(server.close);
    for (let seq = 1; seq <= 3; seq += 1) server.commit(seq);
    const { plain, batched } = await followers(server.url, 3);
    expect(server.subscriptions()).toBe(2);
    server.commit(4, { type: 'job.completed' });
    await until(() => plain.seqs.includes(4) && batched.seqs.includes(4), 'the final event');
    await until(() => server.subscriptions() === 0, 'the subscriptions to end');
    // Events after the end (a manual retry, say) need a new subscription.
    server.commit(5);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(plain.seqs).toEqual(sequence(4));
    expect(batched.seqs).toEqual(sequence(4));

    // Replayed to its final event: the subscription ends after the replay.
    const late = await open(server.url);
    cleanups.push(() => void late.socket.close());
    await subscribed(late.socket, 3);
    await until(() => late.seqs.includes(4), 'the replayed final event');
    expect(late.seqs).toEqual([4, 5]);
    await until(() => server.subscriptions() === 1, 'the replay of a job that went on after its end to stay subscribed');
  });

  it('refuses a subscription past the per-connection limit, counting requests still under way', async () => {
    const server = await start();
    cleanups.push(server.close);
    const { socket } = await open(server.url);
    cleanups.push(() => void socket.close());
    const answers = (await Promise.all(
      Array.from({ length: MAX_SUBSCRIPTIONS_PER_SOCKET + 5 }, (_, index) => socket.timeout(10_000).emitWithAck('subscribe', { queue: `q${index}` })),
    )) as { ok: boolean; error?: { code: string } }[];
    expect(answers.filter((answer) => answer.ok)).toHaveLength(MAX_SUBSCRIPTIONS_PER_SOCKET);
    expect(answers.at(-1)).toMatchObject({ ok: false, error: { code: 'JOBLINE_TOO_MANY_SUBSCRIPTIONS' } });
    // Subscribing again to what it holds is no new subscription.
    expect(await socket.timeout(5000).emitWithAck('subscribe', { queue: 'q0' })).toEqual({ ok: true });
    expect(await socket.timeout(5000).emitWithAck('subscribe', { jobId: JOB_ID })).toMatchObject({ ok: false, error: { code: 'JOBLINE_TOO_MANY_SUBSCRIPTIONS' } });
    expect(await socket.timeout(5000).emitWithAck('unsubscribe', { queue: 'q0' })).toEqual({ ok: true });
    expect(await socket.timeout(5000).emitWithAck('subscribe', { jobId: JOB_ID })).toMatchObject({ ok: true });
  });
});

function sequence(last: number): number[] {
  return Array.from({ length: last }, (_, index) => index + 1);
}

async function subscribed(socket: ClientSocket, fromSeq: number, batch = false): Promise<void> {
  const answer = (await socket.timeout(5000).emitWithAck('subscribe', { jobId: JOB_ID, fromSeq, ...(batch ? { batch } : {}) })) as { ok: boolean };
  expect(answer.ok).toBe(true);
}
