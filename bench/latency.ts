import { performance } from 'node:perf_hooks';
import { makeBenchDir, startServer } from './server.js';
import { percentile } from './stats.js';

const JOBS = 200;
const WARM_UP = 10;
const TIMEOUT_MS = 10_000;

interface PublicJob {
  id: string;
  state: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/**
 * On an idle server, single jobs one at a time: submit → start and submit → finish from the job's
 * own timestamps (millisecond resolution), and submit → completed as a polling client sees it.
 */
export async function run(): Promise<void> {
  const dir = makeBenchDir();
  try {
    const server = await startServer(dir);
    try {
      const toStart: number[] = [];
      const toFinish: number[] = [];
      const postRoundTrip: number[] = [];
      const observed: number[] = [];
      let polls = 0;
      for (let i = 0; i < WARM_UP + JOBS; i += 1) {
        const sent = performance.now();
        const submitted = await server.api<PublicJob>('POST', '/v1/jobs', { type: 'noop', payload: { i } }, 201);
        const answered = performance.now();
        let job = submitted;
        // Back-to-back GETs: the client learns of completion within one round trip.
        while (job.state !== 'completed') {
          if (job.state === 'failed' || job.state === 'cancelled') throw new Error(`job ${job.id} ended ${job.state}`);
          if (performance.now() - sent > TIMEOUT_MS) throw new Error(`job ${job.id} still ${job.state} after ${TIMEOUT_MS} ms`);
          job = await server.api<PublicJob>('GET', `/v1/jobs/${job.id}`);
          if (i >= WARM_UP) polls += 1;
        }
        const seen = performance.now();
        if (i < WARM_UP) continue;
        const created = Date.parse(job.createdAt);
        toStart.push(Date.parse(job.startedAt!) - created);
        toFinish.push(Date.parse(job.finishedAt!) - created);
        postRoundTrip.push(answered - sent);
        observed.push(seen - sent);
      }
      console.log(`${JOBS} jobs, one at a time, after ${WARM_UP} warm-up jobs; ${(polls / JOBS).toFixed(1)} GET polls per job on average`);
      console.log(line('createdAt → startedAt (job record, 1 ms resolution)', toStart));
      console.log(line('createdAt → finishedAt (job record, 1 ms resolution)', toFinish));
      console.log(line('POST /v1/jobs round trip (client)', postRoundTrip));
      console.log(line('submit → completed seen by client (POST, then GET until completed)', observed));
      const p50 = percentile([...toStart].sort((a, b) => a - b), 50);
      console.log(`target p50 submit → start < 5 ms: ${p50 < 5 ? 'met' : 'MISSED'} (p50=${p50} ms)`);
    } finally {
      await server.stop();
    }
  } finally {
    dir.remove();
  }
}

function line(label: string, timings: number[]): string {
  const sorted = [...timings].sort((a, b) => a - b);
  const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
  const [p50, p95, p99] = [50, 95, 99].map((p) => fmt(percentile(sorted, p)));
  return `${label}: n=${sorted.length} p50=${p50} p95=${p95} p99=${p99} max=${fmt(sorted.at(-1) ?? Number.NaN)}`;
}
