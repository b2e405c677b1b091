import { retentionCutoffs } from './lifecycle.js';
import type { RetentionPolicy } from './types.js';

/** Retention deletes this many jobs per transaction, yielding between chunks. */
const RETENTION_CHUNK = 100;

/**
 * The retention purge both engines run: for each finished state, jobs finished before its
 * cutoff are deleted in chunks (each its own transaction, by `deleteChunk`, which returns how
 * many it deleted), yielding to the event loop between chunks so the engine never stalls.
 * Stops early once `running()` turns false.
 */
export async function purgeFinished(
  now: number,
  retention: RetentionPolicy,
  running: () => boolean,
  deleteChunk: (state: 'completed' | 'failed' | 'cancelled', finishedBefore: number, limit: number) => number | Promise<number>,
): Promise<void> {
  for (const [state, cutoff] of retentionCutoffs(now, retention)) {
    for (;;) {
      if (!running()) return;
      const deleted = await deleteChunk(state, cutoff, RETENTION_CHUNK);
      if (deleted < RETENTION_CHUNK) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
