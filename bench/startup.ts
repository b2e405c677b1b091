import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { summarize } from './stats.js';

const ROOT = path.resolve(import.meta.dirname, '..');

/**
 * Time from `npm start` until GET /health/ready answers 200: on a fresh data directory (migrations,
 * first admin) and on an existing one.
 */
export async function run(): Promise<void> {
  const rounds = 5;
  const fresh: number[] = [];
  const existing: number[] = [];
  for (let i = 0; i < rounds; i += 1) {
    const dir = mkdtempSync(path.join(tmpdir(), 'jobline-bench-start-'));
    try {
      fresh.push(await timeToReady(dir));
      existing.push(await timeToReady(dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log(summarize('npm start → ready, fresh data dir', fresh));
  console.log(summarize('npm start → ready, existing data dir', existing));
}

async function timeToReady(dataDir: string): Promise<number> {
  const started = performance.now();
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('JOBLINE_')));
  const child = spawn('npm', ['start', '--silent'], {
    cwd: ROOT,
    env: { ...env, JOBLINE_DATA_DIR: dataDir, JOBLINE_PORT: '0', JOBLINE_HOST: '127.0.0.1', JOBLINE_LOG_LEVEL: 'info' },
    detached: true,
  });
  let output = '';
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start within 60 s:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
  });
  for (;;) {
    const response = await fetch(`${baseUrl}/health/ready`).catch(() => undefined);
    if (response?.status === 200) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const elapsed = performance.now() - started;
  const exited = new Promise((resolve) => child.on('close', resolve));
  process.kill(-child.pid!, 'SIGTERM');
  await exited;
  return elapsed;
}
