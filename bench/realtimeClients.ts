/**
 * The client side of the realtime benchmark, run in its own process: N Socket.IO clients follow
 * one job. The first half subscribe before it starts; the rest subscribe midway with fromSeq 0.
 * Prints one JSON line of results. Input (env): URL, TOKEN, JOB_ID, CLIENTS, EARLY, DELTAS, BATCH.
 */
import { io, type Socket } from 'socket.io-client';

interface WireEvent {
  type: string;
  seq: number;
  data: { chunk?: { i: number; t: number } };
}

const url = process.env['URL']!;
const token = process.env['TOKEN']!;
const jobId = process.env['JOB_ID']!;
const clients = Number(process.env['CLIENTS'] ?? 100);
const deltas = Number(process.env['DELTAS'] ?? 10_000);
const batch = process.env['BATCH'] === 'true';

interface Tally {
  seqs: number[];
  latencies: number[];
  done: boolean;
}

function follow(late: boolean, onEvent: (event: WireEvent) => void): Promise<{ socket: Socket; tally: Tally }> {
  const tally: Tally = { seqs: [], latencies: [], done: false };
  const socket = io(url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  const receive = (event: WireEvent) => {
    tally.seqs.push(event.seq);
    if (event.type === 'job.completed') tally.done = true;
    if (event.type !== 'job.delta') return;
    // Only live deliveries say anything about latency; replayed ones are old by design.
    if (!late || tally.latencies.length > 0 || Date.now() - (event.data.chunk?.t ?? 0) < 1000) {
      if (event.data.chunk) tally.latencies.push(Date.now() - event.data.chunk.t);
    }
    onEvent(event);
  };
  for (const type of ['job.created', 'job.active', 'job.delta', 'job.completed']) socket.on(type, receive);
  socket.on('job.events', (events: WireEvent[]) => events.forEach(receive));
  return new Promise((resolve, reject) => {
    socket.once('connect_error', reject);
    socket.once('connect', () => {
      socket.emit('subscribe', { jobId, fromSeq: 0, batch }, (ack: { ok: boolean }) => {
        if (!ack.ok) reject(new Error(`subscribe refused: ${JSON.stringify(ack)}`));
        else resolve({ socket, tally });
      });
    });
  });
}

/** How many subscribe before the job starts (EARLY, default half); the rest join midway. */
const early = Number(process.env['EARLY'] ?? Math.ceil(clients / 2));
const followers: { socket: Socket; tally: Tally; late: boolean }[] = [];
let lateStarted = false;
let seenByFirst = 0;
for (let i = 0; i < early; i += 1) {
  const follower = await follow(false, () => {
    if (i !== 0) return;
    seenByFirst += 1;
    // Midway: the other half join, replaying from the start while the stream goes on.
    if (!lateStarted && seenByFirst >= deltas / 2) {
      lateStarted = true;
      void Promise.all(
        Array.from({ length: clients - early }, () => follow(true, () => undefined).then((late) => followers.push({ ...late, late: true }))),
      );
    }
  });
  followers.push({ ...follower, late: false });
}
console.log('READY');

const deadline = Date.now() + 120_000;
while (followers.length < clients || followers.some((follower) => !follower.tally.done)) {
  if (Date.now() > deadline) break;
  await new Promise((resolve) => setTimeout(resolve, 20));
}

const expected = deltas + 3;
let missing = 0;
let repeated = 0;
let deltaEvents = 0;
const latencies: number[] = [];
for (const { tally } of followers) {
  const unique = new Set(tally.seqs);
  repeated += tally.seqs.length - unique.size;
  for (let seq = 1; seq <= expected; seq += 1) if (!unique.has(seq)) missing += 1;
  deltaEvents += tally.seqs.length - (tally.seqs.length - unique.size) - 3;
  latencies.push(...tally.latencies);
}
for (const { socket } of followers) socket.close();
latencies.sort((a, b) => a - b);
const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil((p / 100) * latencies.length) - 1))] ?? Number.NaN;
console.log(
  JSON.stringify({
    clients: followers.length,
    lateClients: followers.filter((f) => f.late).length,
    deltaEvents,
    missing,
    repeated,
    latency: { n: latencies.length, p50: at(50), p99: at(99), max: latencies.at(-1) ?? Number.NaN },
  }),
);
process.exit(0);
