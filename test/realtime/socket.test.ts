import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io as connect, type Socket } from 'socket.io-client';
import { ManualClock } from '../../src/utils/clock.js';
import { Client, registerProbeHandlers } from '../conformance/harness.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

interface WireEvent {
  type: string;
  jobId: string;
  seq: number;
  data: Record<string, unknown>;
}

const EVENT_TYPES = ['job.created', 'job.active', 'job.progress', 'job.delta', 'job.log', 'job.retrying', 'job.completed', 'job.failed', 'job.cancelled'];

/** A connected client that records every job event it receives, in arrival order. */
class LiveClient {
  readonly events: WireEvent[] = [];
  batches = 0;
  ended: { code: string } | null = null;
  private constructor(readonly socket: Socket) {
    for (const type of EVENT_TYPES) socket.on(type, (event: WireEvent) => this.events.push(event));
    socket.on('job.events', (batch: WireEvent[]) => {
      this.batches += 1;
      this.events.push(...batch);
    });
    socket.on('session.ended', (info: { code: string }) => (this.ended = info));
  }

  static async open(baseUrl: string, token: string): Promise<LiveClient> {
    const socket = connect(baseUrl, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return new LiveClient(socket);
  }

  subscribe(target: Record<string, unknown>): Promise<{ ok: boolean; snapshot?: Record<string, unknown>; error?: { code: string } }> {
    return this.socket.timeout(5000).emitWithAck('subscribe', target);
  }

  of(jobId: string): WireEvent[] {
    return this.events.filter((event) => event.jobId === jobId);
  }

  async waitFor(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  close(): void {
    this.socket.close();
  }
}

function expectContiguous(events: WireEvent[], firstSeq: number): void {
  expect(events.map((event) => event.seq)).toEqual(events.map((_event, index) => firstSeq + index));
}

describe('Socket.IO', () => {
  let server: TestRuntime;
  let baseUrl: string;
  let admin: Client;
  let user: Client;
  const sockets: LiveClient[] = [];
  const open = async (token: string) => {
    const socket = await LiveClient.open(baseUrl, token);
    sockets.push(socket);
    return socket;
  };

  beforeAll(async () => {
    server = await startTestRuntime({ handlers: registerProbeHandlers });
    baseUrl = await server.runtime.app.listen({ port: 0, host: '127.0.0.1' });
    admin = new Client(server, (await server.login()).accessToken);
    await server.createUser('viewer@example.com', 'viewer-password-1');
    user = new Client(server, (await server.login('viewer@example.com', 'viewer-password-1')).accessToken);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.close();
    await server.close();
  });

  it('refuses a connection without a token or with a bad one', async () => {
    await expect(LiveClient.open(baseUrl, '')).rejects.toMatchObject({ data: { code: 'JOBLINE_UNAUTHENTICATED' } });
    await expect(LiveClient.open(baseUrl, 'not.a.jwt')).rejects.toMatchObject({ data: { code: 'JOBLINE_TOKEN_INVALID' } });
    await expect(LiveClient.open(baseUrl, 'jl_not_a_real_key')).rejects.toMatchObject({ data: { code: 'JOBLINE_API_KEY_INVALID' } });
  });

  it('acks a job subscription with a snapshot, and refuses another user’s job', async () => {
    const job = await admin.waitFor((await admin.submit({ type: 'echo', payload: { x: 1 } })).id);
    const socket = await open(admin.token);
    const ack = await socket.subscribe({ jobId: job.id });
    expect(ack).toEqual({ ok: true, snapshot: { state: 'completed', progress: null, result: { echoed: { x: 1 } }, error: null, lastSeq: 3 } });
    const stranger = await open(user.token);
    const refused = await stranger.subscribe({ jobId: job.id });
    expect(refused).toMatchObject({ ok: false, error: { code: 'JOBLINE_JOB_NOT_FOUND' } });
    const malformed = await stranger.subscribe({ jobId: 'nope' });
    expect(malformed).toMatchObject({ ok: false, error: { code: 'JOBLINE_VALIDATION_FAILED' } });
  });

  it('delivers live events in order, from before the job starts to its end', async () => {
    await admin.post('/v1/admin/queues/live/pause');
    const job = await admin.submit({ type: 'streamer', queue: 'live', payload: { count: 200, batch: 20, everyMs: 2 } });
    const socket = await open(admin.token);
    expect((await socket.subscribe({ jobId: job.id, fromSeq: 0 })).ok).toBe(true);
    await admin.post('/v1/admin/queues/live/resume');
    await socket.waitFor(() => socket.of(job.id).at(-1)?.type === 'job.completed', 'completion');
    const events = socket.of(job.id);
    expectContiguous(events, 1);
    expect(events.map((event) => event.type)).toEqual(['job.created', 'job.active', ...Array(200).fill('job.delta'), 'job.completed']);
    expect(events.filter((event) => event.type === 'job.delta').map((event) => event.data['chunk'])).toEqual(
      Array.from({ length: 200 }, (_value, index) => `token ${index + 1}`),
    );
  });

  it('replays everything to a late subscriber after the job finished', async () => {
    const job = await admin.waitFor((await admin.submit({ type: 'chatty', payload: { count: 300 } })).id);
    const socket = await open(admin.token);
    await socket.subscribe({ jobId: job.id, fromSeq: 0 });
    await socket.waitFor(() => socket.of(job.id).at(-1)?.type === 'job.completed', 'replay');
    const events = socket.of(job.id);
    expectContiguous(events, 1);
    expect(job.progress).toBe(100);
    // created, active, 300 deltas, 30 progress, 1 log, completed.
    expect(events).toHaveLength(334);
  });

  it('resumes after a given seq', async () => {
    const job = await admin.waitFor((await admin.submit({ type: 'chatty', payload: { count: 100 } })).id);
    const socket = await open(admin.token);
    await socket.subscribe({ jobId: job.id, fromSeq: 57 });
    await socket.waitFor(() => socket.of(job.id).at(-1)?.type === 'job.completed', 'resume');
    expectContiguous(socket.of(job.id), 58);
  });

  it('gives a mid-stream subscriber every event exactly once, many times over', async () => {
    const job = await admin.submit({ type: 'streamer', payload: { count: 3000, batch: 25, everyMs: 3 } });
    const latecomers: LiveClient[] = [];
    await admin.waitFor(job.id, (view) => view.state === 'active');
    for (let i = 0; i < 8; i += 1) {
      const socket = await open(admin.token);
      latecomers.push(socket);
      await socket.subscribe({ jobId: job.id, fromSeq: 0 });
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    for (const socket of latecomers) {
      await socket.waitFor(() => socket.of(job.id).at(-1)?.type === 'job.completed', 'the end of the stream');
      const events = socket.of(job.id);
      expectContiguous(events, 1);
      expect(events).toHaveLength(3003);
    }
  });

  it('in batch mode, sends job.events arrays, with every event exactly once also mid-stream', async () => {
    const job = await admin.submit({ type: 'streamer', payload: { count: 3000, batch: 25, everyMs: 3 } });
    const early = await open(admin.token);
    expect((await early.subscribe({ jobId: job.id, fromSeq: 0, batch: true })).ok).toBe(true);
    await admin.waitFor(job.id, (view) => view.state === 'active');
    const latecomers: LiveClient[] = [];
    for (let i = 0; i < 5; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const socket = await open(admin.token);
      latecomers.push(socket);
      await socket.subscribe({ jobId: job.id, fromSeq: 0, batch: true });
    }
    for (const socket of [early, ...latecomers]) {
      await socket.waitFor(() => socket.of(job.id).at(-1)?.type === 'job.completed', 'the end of the stream');
      expectContiguous(socket.of(job.id), 1);
      expect(socket.of(job.id)).toHaveLength(3003);
      // Far fewer messages than events.
      expect(socket.batches).toBeLessThan(600);
    }
  });

  it('without fromSeq, sends only what follows the snapshot', async () => {
    await admin.post('/v1/admin/queues/snap/pause');
    const job = await admin.submit({ type: 'echo', queue: 'snap' });
    const socket = await open(admin.token);
    const ack = await socket.subscribe({ jobId: job.id });
    expect(ack.snapshot).toMatchObject({ state: 'queued', lastSeq: 1 });
    await admin.post('/v1/admin/queues/snap/resume');
    await socket.waitFor(() => socket.of(job.id).at(-1)?.type === 'job.completed', 'completion');
    expectContiguous(socket.of(job.id), 2);
  });

  it('honours an unsubscribe sent right after a subscribe, and a repeated subscribe sends nothing twice', async () => {
    const done = await admin.waitFor((await admin.submit({ type: 'echo' })).id);
    const quitter = await open(admin.token);
    const subscribed = quitter.subscribe({ jobId: done.id, fromSeq: 0 });
    const unsubscribed = quitter.socket.timeout(5000).emitWithAck('unsubscribe', { jobId: done.id });
    await Promise.all([subscribed, unsubscribed]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(quitter.of(done.id)).toEqual([]);

    const twice = await open(admin.token);
    await Promise.all([twice.subscribe({ jobId: done.id, fromSeq: 0 }), twice.subscribe({ jobId: done.id, fromSeq: 0 })]);
    await twice.waitFor(() => twice.of(done.id).at(-1)?.type === 'job.completed', 'replay');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expectContiguous(twice.of(done.id), 1);
  });

  it('follows all of a user’s own jobs, and only those; queues are for admins', async () => {
    const socket = await open(user.token);
    expect(await socket.subscribe({ all: true })).toEqual({ ok: true });
    expect(await socket.subscribe({ queue: 'default' })).toMatchObject({ ok: false, error: { code: 'JOBLINE_FORBIDDEN' } });
    const mine = await user.submit({ type: 'echo' });
    const theirs = await admin.submit({ type: 'echo' });
    await user.waitFor(mine.id);
    await admin.waitFor(theirs.id);
    await socket.waitFor(() => socket.of(mine.id).at(-1)?.type === 'job.completed', 'own job');
    expect(socket.of(theirs.id)).toEqual([]);

    const watcher = await open(admin.token);
    expect(await watcher.subscribe({ queue: 'watched' })).toEqual({ ok: true });
    const queued = await user.submit({ type: 'echo', queue: 'watched' });
    await watcher.waitFor(() => watcher.of(queued.id).at(-1)?.type === 'job.completed', 'queue events');
    expect(await watcher.socket.timeout(5000).emitWithAck('unsubscribe', { queue: 'watched' })).toEqual({ ok: true });
    const after = await user.waitFor((await user.submit({ type: 'echo', queue: 'watched' })).id);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(watcher.of(after.id)).toEqual([]);
  });

  it('drops the connection when its API key is revoked', async () => {
    const created = (await server.request({ method: 'POST', url: '/v1/api-keys', token: user.token, body: { name: 'live' } })).json();
    const socket = await open(created.key);
    const closed = new Promise((resolve) => socket.socket.once('disconnect', resolve));
    await server.request({ method: 'DELETE', url: `/v1/api-keys/${created.id}`, token: user.token });
    await closed;
    expect(socket.ended).toMatchObject({ code: 'JOBLINE_API_KEY_INVALID' });
  });

  it('asks an API key for the jobs:read scope, as the HTTP API does', async () => {
    const job = await admin.waitFor((await admin.submit({ type: 'echo', payload: { secret: 42 } })).id);
    const narrow = (await server.request({ method: 'POST', url: '/v1/api-keys', token: admin.token, body: { name: 'hooks only', scopes: ['webhooks:read'] } })).json();
    expect((await server.request({ method: 'GET', url: `/v1/jobs/${job.id}`, token: narrow.key })).statusCode).toBe(403);
    const refused = await open(narrow.key);
    for (const target of [{ jobId: job.id, fromSeq: 0 }, { queue: 'default' }, { all: true }]) {
      const answer = await refused.subscribe(target);
      expect(answer).toMatchObject({ ok: false, error: { code: 'JOBLINE_INSUFFICIENT_SCOPE' } });
      expect(answer.snapshot).toBeUndefined();
    }
    const reader = (await server.request({ method: 'POST', url: '/v1/api-keys', token: admin.token, body: { name: 'reader', scopes: ['jobs:read'] } })).json();
    const allowed = await open(reader.key);
    expect(await allowed.subscribe({ jobId: job.id, fromSeq: 0 })).toMatchObject({ ok: true, snapshot: { state: 'completed' } });
    await allowed.waitFor(() => allowed.of(job.id).some((event) => event.type === 'job.completed'), 'the replayed completion');
  });

  it('drops the connection when its API key expires', async () => {
    const created = (
      await server.request({ method: 'POST', url: '/v1/api-keys', token: user.token, body: { name: 'short', expiresAt: new Date(Date.now() + 4000).toISOString() } })
    ).json();
    const socket = await open(created.key);
    const closed = new Promise((resolve) => socket.socket.once('disconnect', resolve));
    await closed;
    expect(socket.ended).toMatchObject({ code: 'JOBLINE_API_KEY_INVALID' });
  });

  it('shows connections and subscriptions in the metrics', async () => {
    const metrics = (await server.request({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/jobline_socket_connections \d+/);
    expect(metrics).toMatch(/jobline_events_sent_total\{transport="socketio"\} [1-9]\d*/);
  });
});

describe('Socket.IO token expiry', () => {
  it('drops the connection when its access token expires', async () => {
    const clock = new ManualClock(Date.now() - 15 * 60_000);
    const server = await startTestRuntime({ clock });
    try {
      const baseUrl = await server.runtime.app.listen({ port: 0, host: '127.0.0.1' });
      // Set only now (starting the server may take seconds on a loaded machine): the token is issued
      // by a clock 15 minutes minus one second behind, so it expires a second from now. The server
      // checks it against the same (still) clock when the socket connects.
      clock.set(Date.now() - 15 * 60_000 + 1000);
      const token = (await server.login()).accessToken;
      // Listeners go on before connecting: if the connect is slow, the expiry may follow it at once.
      const socket = connect(baseUrl, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
      let ended: { code: string } | null = null;
      socket.on('session.ended', (info: { code: string }) => (ended = info));
      const disconnected = new Promise((resolve) => socket.once('disconnect', resolve));
      try {
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', () => resolve());
          socket.once('connect_error', reject);
        });
        await disconnected;
        expect(ended).toMatchObject({ code: 'JOBLINE_TOKEN_EXPIRED' });
      } finally {
        socket.close();
      }
    } finally {
      await server.close();
    }
  });
});
