import { closeSync, openSync, rmSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A lock file beside the profiles, held while one `jobline` process renews a login. Refresh
 * tokens work once and the server ends a login whose spent token is shown again, so two
 * commands started together must not both trade the same token: the second waits, then reads
 * the token the first one stored.
 */

const WAIT_MS = 15_000;
/** A lock older than this was left by a process that died while holding it. */
const STALE_MS = 30_000;

export async function withFileLock<T>(file: string, work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  let handle: number | null = null;
  while (handle === null) {
    try {
      handle = openSync(file, 'wx', 0o600);
    } catch (error) {
      if (!(error instanceof Error && 'code' in error && error.code === 'EEXIST')) throw error;
      if (isStale(file) || Date.now() > deadline) rmSync(file, { force: true });
      else await sleep(50);
    }
  }
  try {
    return await work();
  } finally {
    closeSync(handle);
    rmSync(file, { force: true });
  }
}

function isStale(file: string): boolean {
  try {
    return Date.now() - statSync(file).mtimeMs > STALE_MS;
  } catch {
    return true;
  }
}
