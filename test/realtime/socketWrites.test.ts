import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io as connect, type Socket } from 'socket.io-client';
import type { Writable } from 'node:stream';
import { newJob } from '../conformance/harness.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const BURST = 300;

/** The server side of a connection: its TCP socket, reached through engine.io's transport. */
interface ServerConnection {
  conn: { transport: { name: string; socket?: { _socket?: Writable } } };
}

/**
 * A burst of events to one socket leaves the server in a few TCP writes, not one system call per
 * event: engine.io's frames of one flush are corked together (src/config/socket.ts).
 */
describe('Socket.IO write coalescing', () => {
  let server: TestRuntime;
  let baseUrl: string;
  let token: string;
  let ownerId: string;
  const clients: Socket[] = [];

  beforeAll(async () => {
    server = await startTestRuntime();
    baseUrl = await server.runtime.app.listen({ port: 0, host: '127.0.0.1' });
    ({ accessToken: token, userId: ownerId } = await server.login());
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await server.close();
  });

  /** Counts the writes that reach the TCP socket behind the server's side of `client`. */
  function countWrites(client: Socket): () => number {
    const serverSide = server.runtime.io!.of('/').sockets.get(client.id!) as unknown as ServerConnection;
    expect(serverSide.conn.transport.name).toBe('websocket');
    const tcp = serverSide.conn.transport.socket!._socket! as Writable & { _write: Writable['_write']; _writev?: Writable['_writev'] };
    let writes = 0;
    const write = tcp._write.bind(tcp);
    tcp._write = (chunk, encoding, callback) => {
      writes += 1;
      write(chunk, encoding, callback);
    };
    const writev = tcp._writev?.bind(tcp);
    if (writev) {
      tcp._writev = (chunks, callback) => {
        writes += 1;
        writev(chunks, callback);
      };
    }
    return () => writes;
  }

  async function burstTo(client: Socket): Promise<{ received: number; writes: number }> {
    let received = 0;
    client.on('job.created', () => (received += 1));
    expect(await client.timeout(5000).emitWithAck('subscribe', { all: true })).toMatchObject({ ok: true });
    const writes = countWrites(client);
    // One engine commit: BURST job.created events emitted to the socket in one go.
    await server.runtime.engine.addJobs(Array.from({ length: BURST }, () => newJob(ownerId)));
    const deadline = Date.now() + 10_000;
    while (received < BURST && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    client.off('job.created');
    await client.timeout(5000).emitWithAck('unsubscribe', { all: true });
    return { received, writes: writes() };
  }

  async function open(transports: ('websocket' | 'polling')[]): Promise<Socket> {
    const client = connect(baseUrl, { auth: { token }, transports, reconnection: false, forceNew: true });
    clients.push(client);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('connect_error', reject);
    });
    return client;
  }

  it('sends a burst over a WebSocket connection in far fewer writes than events', async () => {
    const client = await open(['websocket']);
    const { received, writes } = await burstTo(client);
    expect(received).toBe(BURST);
    // Uncorked, every event after the first would be its own write (about BURST of them).
    expect(writes).toBeLessThan(BURST / 10);
  });

  it('does the same on a connection that started on long-polling and upgraded', async () => {
    const client = await open(['polling', 'websocket']);
    const deadline = Date.now() + 10_000;
    while (client.io.engine.transport.name !== 'websocket' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(client.io.engine.transport.name).toBe('websocket');
    // The server switches transports once the client's upgrade completes.
    while ((server.runtime.io!.of('/').sockets.get(client.id!) as unknown as ServerConnection).conn.transport.name !== 'websocket' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const { received, writes } = await burstTo(client);
    expect(received).toBe(BURST);
    expect(writes).toBeLessThan(BURST / 10);
  });
});
