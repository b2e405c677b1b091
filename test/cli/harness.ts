import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { callServer, childEnv, loginTo, ROOT, runCli, startServerProcess, type CliRun, type ServerProcess } from '../helpers/process.js';

/**
 * One real server per test file, and the real `jobline` command run against it as a subprocess,
 * each test with a config folder of its own (XDG_CONFIG_HOME), so profiles never leak between tests.
 */

export const ADMIN = { email: 'cli-admin@example.com', password: 'cli-admin-password-1' };

/**
 * Test handlers: `echo` streams "hello world\n", reports progress and returns its payload (or
 * fails when asked); `drip` streams five lines over a second; `hold` runs until cancelled.
 */
const HANDLERS: Record<string, string> = {
  'echo.mjs': `export default {
    type: 'echo',
    async run(ctx) {
      for (const chunk of ['hello ', 'world', '\\n']) ctx.delta(chunk);
      ctx.progress(50);
      ctx.log('halfway');
      if (ctx.payload && ctx.payload.fail) throw new Error('asked to fail');
      ctx.progress(100);
      return { echoed: ctx.payload ?? null };
    },
  };\n`,
  'drip.mjs': `export default {
    type: 'drip',
    async run(ctx) {
      for (let line = 1; line <= 5; line++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        ctx.delta(\`line \${line}\\n\`);
        ctx.progress(line * 20);
      }
      return 'dripped';
    },
  };\n`,
  'hold.mjs': `export default {
    type: 'hold',
    async run(ctx) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 60000);
        ctx.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); });
      });
      return 'held';
    },
  };\n`,
};

export interface Harness {
  server: ServerProcess;
  root: string;
  /** A fresh config folder (an empty $XDG_CONFIG_HOME). */
  configHome(): string;
  /** An admin API key made through the API. */
  adminKey(): Promise<string>;
  stop(): Promise<void>;
}

export async function startHarness(extraEnv: Record<string, string> = {}): Promise<Harness> {
  const root = mkdtempSync(path.join(tmpdir(), 'jobline-cli-'));
  const handlersDir = path.join(root, 'handlers');
  mkdirSync(handlersDir);
  for (const [file, source] of Object.entries(HANDLERS)) writeFileSync(path.join(handlersDir, file), source);
  const server = await startServerProcess({
    JOBLINE_DATA_DIR: path.join(root, 'data'),
    JOBLINE_HANDLERS_DIR: handlersDir,
    JOBLINE_ADMIN_EMAIL: ADMIN.email,
    JOBLINE_ADMIN_PASSWORD: ADMIN.password,
    ...extraEnv,
  });
  let homes = 0;
  let key: string | null = null;
  return {
    server,
    root,
    configHome: () => {
      const dir = path.join(root, `config-${++homes}`);
      mkdirSync(dir);
      return dir;
    },
    async adminKey() {
      if (key) return key;
      const token = await loginTo(server, ADMIN.email, ADMIN.password);
      const created = await callServer<{ key: string }>(server, token, 'POST', '/v1/api-keys', { name: 'cli-tests' });
      key = created.body.key;
      return key;
    },
    async stop() {
      if (server.child.exitCode === null) server.child.kill('SIGTERM');
      await server.exited;
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Runs `jobline` with the given config folder and variables, none of the test runner's colour settings. */
export function jobline(args: string[], env: { configHome: string } & Record<string, string>, input?: string): Promise<CliRun> {
  const { configHome, ...rest } = env;
  const unset = ['FORCE_COLOR', 'NO_COLOR', 'XDG_CONFIG_HOME', 'APPDATA'];
  return runCli(args, { XDG_CONFIG_HOME: configHome, HOME: configHome, ...rest }, undefined, { unset, ...(input === undefined ? {} : { input }) });
}

/** Whether util-linux `script` is here to give a command a real terminal. */
export const HAS_SCRIPT = spawnSync('script', ['--version']).status === 0;

/** Runs `jobline` on a real pseudo-terminal (stdout and stderr both the terminal), through `script`. */
export function joblineOnTerminal(args: string[], env: { configHome: string } & Record<string, string>): Promise<CliRun> {
  const { configHome, ...rest } = env;
  const command = [process.execPath, '--import', 'tsx', path.join(ROOT, 'src/index.ts'), ...args].map((word) => `'${word.replace(/'/g, "'\\''")}'`).join(' ');
  return runScript(['-qefc', command, '/dev/null'], { XDG_CONFIG_HOME: configHome, HOME: configHome, ...rest });
}

function runScript(args: string[], env: Record<string, string>): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('script', args, { cwd: ROOT, env: childEnv(env, ['FORCE_COLOR', 'NO_COLOR', 'XDG_CONFIG_HOME', 'APPDATA']) });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr: '' }));
    child.stdin.end();
  });
}

/** The stored profiles of a config folder. */
export function readProfiles(configHome: string): Record<string, { url: string; apiKey?: string; session?: { refreshToken: string; accessToken: string; expiresAt?: number } }> {
  return (JSON.parse(readFileSync(path.join(configHome, 'jobline', 'config.json'), 'utf8')) as { profiles: never }).profiles;
}

/** Asserts the Bad-input contract: a non-zero exit, one line on stderr that contains `expected`, no stack trace. */
export function expectOneLineError(run: CliRun, expected: string | RegExp): void {
  expect(run.code, run.stderr).not.toBe(0);
  expect(run.code).not.toBeNull();
  const lines = run.stderr.split('\n').filter((line) => line.length > 0);
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^jobline: /);
  if (typeof expected === 'string') expect(lines[0]).toContain(expected);
  else expect(lines[0]).toMatch(expected);
  expect(run.stderr).not.toMatch(/\n\s+at /);
}

/** A localhost port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Each test runs several `jobline` processes (TypeScript through tsx): seconds each when idle. */
export const CLI_TEST_TIMEOUT_MS = 180_000;
