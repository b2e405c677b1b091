import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, startServerProcess } from './helpers/process.js';

const dirs: string[] = [];
function dataDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'jobline-cli-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function login(baseUrl: string, email: string, password: string): Promise<Response> {
  return fetch(`${baseUrl}/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
}

/** Each test starts `jobline` processes (TypeScript through tsx): seconds each when idle, many more on a loaded machine. */
const PROCESS_TEST_TIMEOUT_MS = 120_000;

describe('the jobline command', () => {
  it('migrates, creates a user, then serves them; SIGTERM exits 0', async () => {
    const dir = dataDir();
    const env = { JOBLINE_DATA_DIR: dir, JOBLINE_LOG_LEVEL: 'info' };
    const migrated = await runCli(['migrate'], env);
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toContain('0001_accounts');
    expect((await runCli(['migrate'], env)).stdout).toContain('up to date');

    const created = await runCli(['user', 'create', '--email', 'ops@example.com', '--password', 'ops-password-1', '--role', 'admin'], env);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain('created admin ops@example.com');

    const server = await startServerProcess(env);
    try {
      const ready = await fetch(`${server.baseUrl}/health/ready`);
      expect(ready.status).toBe(200);
      const response = await login(server.baseUrl, 'ops@example.com', 'ops-password-1');
      expect(response.status).toBe(200);
      // A user existed, so no admin was generated.
      expect(server.output()).not.toContain('created the first admin');
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(0);
    expect(server.output()).toContain('shut down cleanly');
    expect(statSync(path.join(dir, 'jwt-secret')).mode & 0o777).toBe(0o600);
  }, PROCESS_TEST_TIMEOUT_MS);

  it('generates the first admin password once, and only once', async () => {
    const dir = dataDir();
    const first = await startServerProcess({ JOBLINE_DATA_DIR: dir });
    let password: string | undefined;
    try {
      password = /email admin@localhost password (\S+)/.exec(first.output())?.[1];
      expect(password).toBeDefined();
      expect((await login(first.baseUrl, 'admin@localhost', password ?? '')).status).toBe(200);
    } finally {
      first.child.kill('SIGINT');
    }
    expect(await first.exited).toBe(0);

    const second = await startServerProcess({ JOBLINE_DATA_DIR: dir });
    try {
      expect(second.output()).not.toContain('created the first admin');
      // The same signing secret survives the restart.
      expect((await login(second.baseUrl, 'admin@localhost', password ?? '')).status).toBe(200);
    } finally {
      second.child.kill('SIGTERM');
    }
    expect(await second.exited).toBe(0);
  }, PROCESS_TEST_TIMEOUT_MS);

  it('creates the first admin from JOBLINE_ADMIN_EMAIL and JOBLINE_ADMIN_PASSWORD', async () => {
    const server = await startServerProcess({
      JOBLINE_DATA_DIR: dataDir(),
      JOBLINE_ADMIN_EMAIL: 'root@example.com',
      JOBLINE_ADMIN_PASSWORD: 'root-password-1',
    });
    try {
      expect(server.output()).not.toContain('root-password-1');
      expect((await login(server.baseUrl, 'root@example.com', 'root-password-1')).status).toBe(200);
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(0);
  }, PROCESS_TEST_TIMEOUT_MS);

  it('refuses a bad configuration, naming the variable', async () => {
    const result = await runCli(['start'], { JOBLINE_DATA_DIR: dataDir(), JOBLINE_PORT: 'eighty' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('JOBLINE_PORT');
  }, PROCESS_TEST_TIMEOUT_MS);

  it('refuses bad user-create arguments', async () => {
    const env = { JOBLINE_DATA_DIR: dataDir() };
    expect((await runCli(['user', 'create', '--email', 'a@b.c'], env)).code).toBe(1);
    expect((await runCli(['user', 'create', '--email', 'a@b.c', '--password', 'long-enough', '--role', 'god'], env)).code).toBe(1);
    expect((await runCli(['frobnicate'], env)).code).toBe(1);
  }, PROCESS_TEST_TIMEOUT_MS);
});
