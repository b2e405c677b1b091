import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');

/** Environment for a child: this process's, minus any JOBLINE_* (and `unset`) that would leak into it. */
export function childEnv(extra: Record<string, string>, unset: readonly string[] = []): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('JOBLINE_') && !unset.includes(name)));
  return { ...base, ...extra };
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `jobline <args>` (TypeScript sources through tsx) to completion; `input` is written to its stdin. */
export function runCli(args: string[], env: Record<string, string>, cwd = ROOT, options: { input?: string; unset?: readonly string[] } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/index.ts'), ...args], { cwd, env: childEnv(env, options.unset) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

export interface ServerProcess {
  child: ChildProcess;
  baseUrl: string;
  output(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/**
 * Starts `jobline start` on a free port and resolves once it logs the address it listens on. A
 * start takes a few seconds when idle (tsx compiles the sources), many more on a loaded machine.
 */
export function startServerProcess(env: Record<string, string>, timeoutMs = 60_000): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/index.ts'), 'start'], {
    cwd: ROOT,
    env: childEnv({ JOBLINE_PORT: '0', JOBLINE_HOST: '127.0.0.1', ...env }),
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      // Never leave a half-started server behind.
      child.kill('SIGKILL');
      reject(new Error(`server did not start:\n${output}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve({ child, baseUrl: match[1], output: () => output, exited });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output}`));
    });
  });
}

/** Calls a server process's API over real HTTP (JSON in, JSON out). */
export async function callServer<T = Record<string, unknown>>(
  server: ServerProcess,
  token: string | null,
  method: string,
  url: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const response = await fetch(`${server.baseUrl}${url}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** Logs in to a server process and returns the access token. */
export async function loginTo(server: ServerProcess, email: string, password: string): Promise<string> {
  const { status, body } = await callServer<{ accessToken: string }>(server, null, 'POST', '/v1/auth/login', { email, password });
  if (status !== 200) throw new Error(`login failed with ${status}`);
  return body.accessToken;
}
