import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeBenchDir, ROOT, startServer } from './server.js';

const CLIENTS = 100;
const DELTAS = 10_000;

/**
 * One job emits 10,000 deltas as fast as it can while 100 Socket.IO clients in another process
 * follow it (half from before it starts, half joining midway with fromSeq 0). Reports the
 * handler's emit rate, deliveries (must be exactly clients × deltas, none missing or repeated)
 * and delivery latency from ctx.delta to a client, for plain and for batched subscriptions.
 */
export async function run(): Promise<void> {
  console.log('-- one Socket.IO message per event (the default)');
  await measure(false);
  console.log('-- batch: true (job.events arrays, gathered per tick)');
  await measure(true);
  console.log('-- batch: true, producer paced at 20,000 deltas/s');
  await measure(true, 20_000);
}

async function measure(batch: boolean, pacedPerSecond = 0): Promise<void> {
  const dir = makeBenchDir();
  writeFileSync(
    path.join(dir.handlersDir, 'stream.mjs'),
    `export default {
      type: 'stream',
      queue: 'stream',
      async run(ctx) {
        const started = performance.now();
        const perMs = ctx.payload.pacedPerSecond / 1000;
        for (let i = 1; i <= ctx.payload.count; i += 1) {
          ctx.delta({ i, t: Date.now() });
          if (perMs > 0) {
            // Paced: never ahead of the schedule.
            const due = started + i / perMs;
            if (performance.now() < due) await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())));
          } else if (i % 50 === 0) {
            // Yield now and then, as a real producer (a model, a build) would between chunks.
            await new Promise((resolve) => setImmediate(resolve));
          }
        }
        return { emitMs: performance.now() - started };
      },
    };\n`,
  );
  const server = await startServer(dir);
  try {
    await server.api('POST', '/v1/admin/queues/stream/pause');
    const job = await server.api<{ id: string }>('POST', '/v1/jobs', { type: 'stream', payload: { count: DELTAS, pacedPerSecond } });
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('JOBLINE_')));
    const clients = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/realtimeClients.ts')], {
      cwd: ROOT,
      env: { ...env, URL: server.baseUrl, TOKEN: server.token, JOB_ID: job.id, CLIENTS: String(CLIENTS), DELTAS: String(DELTAS), BATCH: String(batch) },
    });
    let clientOutput = '';
    clients.stdout.on('data', (chunk: Buffer) => (clientOutput += chunk.toString()));
    clients.stderr.on('data', (chunk: Buffer) => (clientOutput += chunk.toString()));
    while (!clientOutput.includes('READY')) {
      if (clients.exitCode !== null) throw new Error(`clients failed:\n${clientOutput}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await server.api('POST', '/v1/admin/queues/stream/resume');
    await new Promise((resolve) => clients.on('close', resolve));
    const resultLine = clientOutput.split('\n').find((line) => line.startsWith('{'));
    if (!resultLine) throw new Error(`no result from clients:\n${clientOutput}`);
    const result = JSON.parse(resultLine) as {
      clients: number;
      lateClients: number;
      deltaEvents: number;
      missing: number;
      repeated: number;
      latency: { n: number; p50: number; p99: number; max: number };
    };
    const finished = await server.api<{ result: { emitMs: number } }>('GET', `/v1/jobs/${job.id}`);
    const emitMs = finished.result.emitMs;
    console.log(`handler emitted ${DELTAS} deltas in ${emitMs.toFixed(0)} ms: ${Math.round(DELTAS / (emitMs / 1000))} deltas/s (target ≥ 20,000)`);
    console.log(
      `clients: ${result.clients} (${result.lateClients} joined midway with fromSeq 0); delta events delivered: ${result.deltaEvents} ` +
        `(expected ${CLIENTS * DELTAS}); missing: ${result.missing}; repeated: ${result.repeated}`,
    );
    console.log(
      `delivery latency ctx.delta → client (live deliveries, n=${result.latency.n}): p50 ${result.latency.p50} ms, ` +
        `p99 ${result.latency.p99} ms, max ${result.latency.max} ms (target p99 < 50 ms)`,
    );
  } finally {
    await server.stop();
    dir.remove();
  }
}
