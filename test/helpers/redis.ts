import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { createLogger, type Logger } from '../../src/utils/logger.js';

/** The machine's Redis; override with JOBLINE_TEST_REDIS_URL. */
export const REDIS_TEST_URL = process.env['JOBLINE_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const IN_CI = process.env['CI'] === 'true';

/** A short-lived client for tests' own setup and cleanup (no retries: a missing server fails fast). */
export function testRedisClient(url = REDIS_TEST_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: 0, connectTimeout: 2000, retryStrategy: () => null, lazyConnect: true });
}

export async function redisReachable(): Promise<boolean> {
  const client = testRedisClient();
  // The socket's own error (ECONNREFUSED …) says more than the "Connection is closed" connect() rejects with.
  let socketError: unknown;
  client.on('error', (error) => (socketError = error));
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch (error) {
    // Under CI a missing Redis is a failure, never a silent skip.
    if (IN_CI) throw new Error(`Redis is not reachable at ${REDIS_TEST_URL} under CI=true`, { cause: socketError ?? error });
    return false;
  } finally {
    client.disconnect();
  }
}

/** A key and channel prefix no other test (or test run) shares. */
export function testPrefix(): string {
  return `jltest:${process.pid}:${randomBytes(4).toString('hex')}:`;
}

/**
 * The variables that put a test server in distributed mode on `prefix` (add JOBLINE_DATABASE_URL,
 * or pass `postgresUrl` to startTestRuntime). All servers of one test share the JWT secret.
 */
export function distributedEnv(prefix: string, redisUrl = REDIS_TEST_URL): Record<string, string> {
  return { JOBLINE_REDIS_URL: redisUrl, JOBLINE_REDIS_PREFIX: prefix, JOBLINE_JWT_SECRET: 'distributed-test-secret-0123456789abcdef' };
}

/** Deletes every key under `prefix` (call at the end of each test). */
export async function deleteKeys(prefix: string, url = REDIS_TEST_URL): Promise<number> {
  const client = testRedisClient(url);
  await client.connect();
  let deleted = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) deleted += await client.del(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
  return deleted;
}

export async function countKeys(prefix: string, url = REDIS_TEST_URL): Promise<number> {
  const client = testRedisClient(url);
  await client.connect();
  try {
    let count = 0;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 500);
      cursor = next;
      count += keys.length;
    } while (cursor !== '0');
    return count;
  } finally {
    client.disconnect();
  }
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

export interface PrivateRedis {
  url: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Whether `redis-server` can be started here (always expected under CI, where .ci/run uses it). */
export async function redisServerAvailable(): Promise<boolean> {
  const available = await new Promise<boolean>((resolve) => {
    const probe = spawn('redis-server', ['--version'], { stdio: 'ignore' });
    probe.on('error', () => resolve(false));
    probe.on('exit', (code) => resolve(code === 0));
  });
  if (!available && IN_CI) throw new Error('redis-server is not installed under CI=true');
  return available;
}

/**
 * Starts a Redis of the test's own on a free port, keeping nothing on disk, for tests that change
 * server settings or stop the server (never the shared one). Extra arguments are passed through,
 * e.g. ['--maxmemory-policy', 'allkeys-lru']. `stop()` kills it (SIGKILL), as a crash would.
 */
export async function startPrivateRedis(args: string[] = [], options: { port?: number } = {}): Promise<PrivateRedis> {
  // A given port restarts a server where its clients expect it.
  const port = options.port ?? (await freePort());
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args], {
    stdio: 'ignore',
  });
  const url = `redis://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const client = testRedisClient(url);
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      client.disconnect();
      break;
    } catch (error) {
      client.disconnect();
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not start on port ${port}`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return {
    url,
    port,
    process: child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Polls until `condition` holds; fails with `what` after `timeoutMs` (generous: only a broken run reaches it). */
export async function waitUntil(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A logger that keeps its lines, to assert on what was logged. */
export function memoryLogger(level = 'debug'): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level, destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
  return { logger, lines };
}
