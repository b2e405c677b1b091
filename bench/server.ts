import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A Jobline server in its own process for benchmarks: a fresh temp dir (data + a no-op
 * handler), the admin logged in, and a small authenticated JSON client.
 */

export const ROOT = path.resolve(import.meta.dirname, '..');
const ENTRY = path.join(ROOT, 'src/index.ts');
export const ADMIN = { email: 'bench@example.com', password: 'bench-password-1' } as const;

export interface BenchDir {
  root: string;
  dataDir: string;
  handlersDir: string;
  remove(): void;
}

/** A temp dir holding `data/` and `handlers/noop.mjs` (a handler that does nothing). */
export function makeBenchDir(options: { concurrency?: number; queue?: string } = {}): BenchDir {
  const root = mkdtempSync(path.join(tmpdir(), 'jobline-bench-'));
  const dataDir = path.join(root, 'data');
  const handlersDir = path.join(root, 'handlers');
  mkdirSync(dataDir);
  mkdirSync(handlersDir);
  const handler = { type: 'noop', concurrency: options.concurrency ?? 100, ...(options.queue ? { queue: options.queue } : {}) };
  writeFileSync(
    path.join(handlersDir, 'noop.mjs'),
    `const spec = ${JSON.stringify(handler)};\nexport default { ...spec, run: async () => null };\n`,
  );
  return { root, dataDir, handlersDir, remove: () => rmSync(root, { recursive: true, force: true }) };
}

function serverEnv(dir: BenchDir, extra: Record<string, string>): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('JOBLINE_')));
  return {
    ...inherited,
    JOBLINE_DATA_DIR: dir.dataDir,
      JOBLINE_HOST: '127.0.0.1',
    JOBLINE_ADMIN_EMAIL: ADMIN.email,
    JOBLINE_ADMIN_PASSWORD: ADMIN.password,
    JOBLINE_HANDLERS_DIR: dir.handlersDir,
    JOBLINE_RATE_LIMIT: '0',
    JOBLINE_LOG_LEVEL: 'warn',
    ...extra,
  };
}

/** Runs a `jobline` command (e.g. `migrate`, `user create …`) on the dir's data directory and returns its output. */
export async function runCli(dir: BenchDir, args: string[]): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, ...args], { cwd: ROOT, env: serverEnv(dir, {}) });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`jobline ${args.join(' ')} exited with ${code}:\n${output}`);
  return output;
}

export interface RunningServer {
  baseUrl: string;
  /** The node process that serves (spawned directly, so no npm or shell in between). */
  pid: number;
  token: string;
  /** Everything the server printed, for error reports. */
  output(): string;
  api<T = unknown>(method: string, route: string, body?: unknown, expected?: number): Promise<T>;
  /** The same, authenticated with another token (another user's). */
  apiAs<T = unknown>(token: string, method: string, route: string, body?: unknown, expected?: number): Promise<T>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Log in as the admin (default true); processes that serve no API (JOBLINE_ROLE=worker) cannot. */
  login?: boolean;
  /** After SIGTERM, how long `stop()` waits before SIGKILL (default 30 s). */
  killAfterMs?: number;
}

/**
 * Starts `jobline start` on the dir and logs in as the admin. The server logs its address only at
 * info level, so at `warn` the bench picks a free port itself and waits for /health/ready.
 */
export async function startServer(
  dir: BenchDir,
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
  options: StartOptions = {},
): Promise<RunningServer> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', ENTRY, 'start'], {
    cwd: ROOT,
    env: serverEnv(dir, { JOBLINE_PORT: String(port), ...env }),
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const server: RunningServer = {
    baseUrl,
    pid: child.pid!,
    token: '',
    output: () => output,
    api: (method, route, body, expected) => callApi(baseUrl, server.token, method, route, body, expected),
    apiAs: (token, method, route, body, expected) => callApi(baseUrl, token, method, route, body, expected),
    stop: () => stopChild(child, exited, () => output, options.killAfterMs ?? 30_000),
  };
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${output}`);
      if (Date.now() > deadline) throw new Error(`server not ready within 60 s:\n${output}`);
      const response = await fetch(`${baseUrl}/health/ready`).catch(() => undefined);
      if (response?.status === 200) break;
      await sleep(20);
    }
    if (options.login ?? true) {
      const login = await server.api<{ accessToken: string }>('POST', '/v1/auth/login', ADMIN, 200);
      server.token = login.accessToken;
    }
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

async function callApi<T>(baseUrl: string, token: string, method: string, route: string, body: unknown, expected?: number): Promise<T> {
  const response = await fetch(`${baseUrl}${route}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (expected !== undefined ? response.status !== expected : !response.ok) {
    throw new Error(`${method} ${route} answered ${response.status}: ${text.slice(0, 500)}`);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

/** SIGTERM, then SIGKILL (and a warning) if the server has not exited within `killAfterMs`. */
async function stopChild(child: ChildProcess, exited: Promise<number | null>, output: () => string, killAfterMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    exited.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), killAfterMs))),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    console.log(`WARNING: server pid ${child.pid} did not exit within ${killAfterMs / 1000} s of SIGTERM; killed. Output tail:\n${output().slice(-2000)}`);
    child.kill('SIGKILL');
    await exited;
  }
}

export interface QueueInfo {
  name: string;
  paused: boolean;
  counts: Record<'queued' | 'scheduled' | 'active' | 'completed' | 'failed' | 'cancelled', number>;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
