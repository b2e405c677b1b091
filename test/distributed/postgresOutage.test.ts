import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, registerProbeHandlers } from '../conformance/harness.js';
import { createTestDatabase, POSTGRES_ADMIN_URL, postgresReachable } from '../helpers/postgres.js';
import { deleteKeys, distributedEnv, redisReachable, testPrefix } from '../helpers/redis.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const available = (await postgresReachable()) && (await redisReachable());

/** A TCP proxy to PostgreSQL that the test can cut (every connection dropped, new ones refused) and restore. */
class CuttableProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server?.close(() => resolve()) ?? resolve());
  }
}

describe.skipIf(!available)('distributed mode while PostgreSQL is unreachable', () => {
  let database: { url: string; drop: () => Promise<void> };
  const prefix = testPrefix();
  let proxy: CuttableProxy;
  let server: TestRuntime;
  let client: Client;

  beforeAll(async () => {
    database = await createTestDatabase();
    const admin = new URL(POSTGRES_ADMIN_URL);
    proxy = new CuttableProxy({ host: admin.hostname, port: Number(admin.port || 5432) });
    await proxy.open();
    const viaProxy = new URL(database.url);
    viaProxy.port = String(proxy.port);
    server = await startTestRuntime({
      postgresUrl: viaProxy.toString(),
      env: distributedEnv(prefix),
      handlers: registerProbeHandlers,
    });
    client = new Client(server, (await server.login()).accessToken);
  });

  afterAll(async () => {
    await server?.close();
    await proxy?.cut();
    await database?.drop();
    await deleteKeys(prefix);
  });

  it('reports not ready and answers 503, then recovers by itself when the database returns', async () => {
    const job = await client.submit({ type: 'echo' });
    await client.waitFor(job.id);
    await proxy.cut();

    const ready = await server.request({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({ code: 'JOBLINE_NOT_READY', checks: { redis: 'ok' } });
    expect(ready.json().checks.database).not.toBe('ok');
    const read = await server.request({ method: 'GET', url: `/v1/jobs/${job.id}`, token: client.token });
    expect(read.statusCode).toBe(503);
    expect(read.json()).toMatchObject({ code: 'JOBLINE_NOT_READY', checks: { database: 'unreachable' } });

    await proxy.open();
    const deadline = Date.now() + 10_000;
    let status = 503;
    while (status !== 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      status = (await server.request({ method: 'GET', url: '/health/ready' })).statusCode;
    }
    expect(status).toBe(200);
    const again = await client.submit({ type: 'echo', payload: { after: 'outage' } });
    expect(await client.waitFor(again.id)).toMatchObject({ state: 'completed' });
  }, 30_000);
});
