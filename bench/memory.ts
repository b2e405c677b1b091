import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { makeBenchDir, sleep, startServer, type QueueInfo } from './server.js';

const JOBS = 100_000;
const CHUNK = 1_000;
const TARGET_MIB = 300;

/** The server's resident memory with 100,000 jobs waiting in a paused queue. */
export async function run(): Promise<void> {
  const dir = makeBenchDir();
  try {
    const server = await startServer(dir);
    try {
      await server.api('POST', '/v1/admin/queues/default/pause', undefined);
      await sleep(500);
      const idle = memory(server.pid);
      const started = performance.now();
      for (let start = 0; start < JOBS; start += CHUNK) {
        const jobs = Array.from({ length: CHUNK }, (_, k) => ({ type: 'noop', payload: { i: start + k } }));
        await server.api('POST', '/v1/jobs/bulk', { jobs }, 201);
      }
      const submitMs = performance.now() - started;
      const afterSubmit = memory(server.pid);
      const queues = await server.api<QueueInfo[]>('GET', '/v1/admin/queues');
      const counts = queues.find((queue) => queue.name === 'default')?.counts;
      if (counts?.queued !== JOBS) throw new Error(`expected ${JOBS} queued jobs in paused queue default, found ${JSON.stringify(counts)}`);
      await sleep(2_000);
      const settled = memory(server.pid);
      console.log(`server pid ${server.pid}; ${JOBS} jobs submitted to paused queue 'default' in ${(submitMs / 1000).toFixed(1)} s (${((JOBS / submitMs) * 1000).toFixed(0)} jobs/s)`);
      console.log(`VmRSS idle after start: ${idle.rss.toFixed(1)} MiB`);
      console.log(`VmRSS right after the last bulk request: ${afterSubmit.rss.toFixed(1)} MiB`);
      console.log(`VmRSS 2 s later: ${settled.rss.toFixed(1)} MiB; peak (VmHWM): ${settled.hwm.toFixed(1)} MiB`);
      const worst = Math.max(afterSubmit.rss, settled.rss);
      console.log(`target RSS < ${TARGET_MIB} MiB: ${worst < TARGET_MIB ? 'met' : 'MISSED'} (peak ${settled.hwm < TARGET_MIB ? 'also under' : 'over'} target)`);
    } finally {
      await server.stop();
    }
  } finally {
    dir.remove();
  }
}

/** VmRSS and VmHWM of a process, in MiB. */
function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!match?.[1]) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(match[1]) / 1024;
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}
