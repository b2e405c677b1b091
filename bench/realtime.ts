import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeBenchDir, ROOT, startServer } from './server.js';

const CLIENTS = 100;
const DELTAS = 10_000;

/**
 * One job emits 10,000 deltas as fast as it can while 100 Socket.IO clients follow it (half from
 * before it starts, half joining midway with fromSeq 0): 99 share one process, and one, the
 * probe, subscribed from the start, has a process to itself. Reports the handler's emit rate,
 * deliveries (must be exactly clients × deltas, none missing or repeated) and delivery latency
 * from ctx.delta to the probe and to the shared process's clients, for plain and for batched
 * subscriptions. The shared process decodes 990,000 events, so its figure is mostly its own
 * backlog; the probe's is what the server delivers to a client that keeps up.
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
    const input = { URL: server.baseUrl, TOKEN: server.token, JOB_ID: job.id, DELTAS: String(DELTAS), BATCH: String(batch) };
    // CLIENTS - 1 clients share one process; one more, the probe, has a process to itself.
    const crowd = startClients({ ...input, CLIENTS: String(CLIENTS - 1), EARLY: String(Math.ceil(CLIENTS / 2) - 1) });
    const probe = startClients({ ...input, CLIENTS: '1', EARLY: '1' });
    await Promise.all([crowd.ready, probe.ready]);
    await server.api('POST', '/v1/admin/queues/stream/resume');
    const [shared, alone] = await Promise.all([crowd.result, probe.result]);
    const finished = await server.api<{ result: { emitMs: number } }>('GET', `/v1/jobs/${job.id}`);
    const emitMs = finished.result.emitMs;
    console.log(`handler emitted ${DELTAS} deltas in ${emitMs.toFixed(0)} ms: ${Math.round(DELTAS / (emitMs / 1000))} deltas/s (target ≥ 20,000)`);
    console.log(
      `clients: ${shared.clients + alone.clients} (${shared.lateClients} joined midway with fromSeq 0); ` +
        `delta events delivered: ${shared.deltaEvents + alone.deltaEvents} (expected ${CLIENTS * DELTAS}); ` +
        `missing: ${shared.missing + alone.missing}; repeated: ${shared.repeated + alone.repeated}`,
    );
    const latency = (label: string, figures: ClientResult['latency']) =>
      console.log(
        `delivery latency ctx.delta → ${label} (live deliveries, n=${figures.n}): p50 ${figures.p50} ms, p99 ${figures.p99} ms, ` +
          `max ${figures.max} ms (target p99 < 50 ms)`,
      );
    latency(`the probe, a client with a process to itself`, alone.latency);
    latency(`the ${shared.clients} clients sharing one process`, shared.latency);
  } finally {
    await server.stop();
    dir.remove();
  }
}

interface ClientResult {
  clients: number;
  lateClients: number;
  deltaEvents: number;
  missing: number;
  repeated: number;
  latency: { n: number; p50: number; p99: number; max: number };
}

/** Runs bench/realtimeClients.ts with the given input; `ready` once its early clients have subscribed. */
function startClients(input: Record<string, string>): { ready: Promise<void>; result: Promise<ClientResult> } {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('JOBLINE_')));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/realtimeClients.ts')], { cwd: ROOT, env: { ...env, ...input } });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const ready = (async () => {
    while (!output.includes('READY')) {
      if (child.exitCode !== null) throw new Error(`clients failed:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const result = closed.then(() => {
    const line = output.split('\n').find((candidate) => candidate.startsWith('{'));
    if (!line) throw new Error(`no result from clients:\n${output}`);
    return JSON.parse(line) as ClientResult;
  });
  // Either may be abandoned when the other fails; neither may crash the bench unheard.
  ready.catch(() => undefined);
  result.catch(() => undefined);
  return { ready, result };
}
