import { makeBenchDir, startServer } from './server.js';
import { summarize } from './stats.js';

const SCHEDULES = 20;
const SECONDS = 10;

interface JobPage {
  items: { runAt: string; createdAt: string; scheduleId: string }[];
  nextCursor: string | null;
}

/** Fire lag: from a schedule's fire time to its job's creation, for 20 every-second schedules over 10 s. */
export async function run(): Promise<void> {
  const dir = makeBenchDir({ concurrency: 50 });
  const server = await startServer(dir);
  try {
    const ids: string[] = [];
    for (let i = 0; i < SCHEDULES; i += 1) {
      const schedule = await server.api<{ id: string }>('POST', '/v1/schedules', { name: `s${i}`, cron: '* * * * * *', job: { type: 'noop' } });
      ids.push(schedule.id);
    }
    await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
    for (const id of ids) await server.api('PATCH', `/v1/schedules/${id}`, { enabled: false });
    const lags: number[] = [];
    const perFire = new Map<string, number>();
    let cursor: string | null = null;
    do {
      const page: JobPage = await server.api<JobPage>('GET', `/v1/jobs?limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      for (const job of page.items) {
        lags.push(Date.parse(job.createdAt) - Date.parse(job.runAt));
        const key = `${job.scheduleId}@${job.runAt}`;
        perFire.set(key, (perFire.get(key) ?? 0) + 1);
      }
      cursor = page.nextCursor;
    } while (cursor);
    const doubled = [...perFire.values()].filter((count) => count > 1).length;
    console.log(`${SCHEDULES} schedules firing every second for ${SECONDS} s: ${lags.length} jobs, fire times with two jobs: ${doubled}`);
    console.log(`${summarize('fire lag (fire time → job created)', lags)} (target p99 < 200 ms)`);
  } finally {
    await server.stop();
    dir.remove();
  }
}
