import { afterEach, describe, expect, it } from 'vitest';
import { createRedisConnection } from '../../src/config/redis.js';
import type { JobEvent } from '../../src/engine/types.js';
import { JobEventHub } from '../../src/events/hub.js';
import type { ControlMessage } from '../../src/events/index.js';
import { RedisEventBus } from '../../src/events/redisBus.js';
import {
  countKeys,
  deleteKeys,
  memoryLogger,
  REDIS_TEST_URL,
  redisReachable,
  redisServerAvailable,
  startPrivateRedis,
  testPrefix,
  testRedisClient,
  waitUntil,
} from '../helpers/redis.js';

const reachable = await redisReachable();
const canStartRedis = await redisServerAvailable();

function event(jobId: string, seq: number, type: JobEvent['type'] = 'job.delta'): JobEvent {
  return { type, jobId, seq, at: 1_700_000_000_000 + seq, data: { chunk: `part ${seq}` }, queue: 'q', ownerId: 'o' };
}

describe.skipIf(!reachable)('the Redis event bus', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** One "process": its own publisher and subscriber connections, on a shared prefix. */
  async function openBus(prefix: string, name: string, logger = memoryLogger().logger, redisUrl = REDIS_TEST_URL): Promise<RedisEventBus> {
    const config = { redisUrl, role: 'all' as const };
    const bus = await RedisEventBus.connect({
      publisher: createRedisConnection(config, { purpose: 'commands', name: `${name}-publisher`, logger }),
      subscriber: createRedisConnection(config, { purpose: 'commands', name: `${name}-subscriber`, logger }),
      prefix,
      logger,
    });
    cleanups.push(() => bus.close());
    return bus;
  }

  function newPrefix(): string {
    const prefix = testPrefix();
    cleanups.push(() => deleteKeys(prefix));
    return prefix;
  }

  it('delivers every batch of job events to every process, the publisher included, once and in publish order', async () => {
    const prefix = newPrefix();
    const first = await openBus(prefix, 'first');
    const second = await openBus(prefix, 'second');
    const heard: { first: string[]; second: string[] } = { first: [], second: [] };
    first.onJobEvents((events) => heard.first.push(events.map((e) => `${e.jobId}:${e.seq}`).join(',')));
    second.onJobEvents((events) => heard.second.push(events.map((e) => `${e.jobId}:${e.seq}`).join(',')));

    // Both processes publish at once: job a from the first, job b from the second, 3 events per commit.
    for (let batch = 0; batch < 50; batch += 1) {
      const seqs = [1, 2, 3].map((n) => batch * 3 + n);
      first.publishJobEvents(seqs.map((seq) => event('a', seq)));
      second.publishJobEvents(seqs.map((seq) => event('b', seq)));
    }
    await waitUntil(() => heard.first.length >= 100 && heard.second.length >= 100, 'all 100 batches on both buses');
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect(heard.first).toHaveLength(100);
    // Redis orders the two publishers' messages one way, and both processes see that same order.
    expect(heard.second).toEqual(heard.first);
    for (const job of ['a', 'b']) {
      const batches = heard.first.filter((batch) => batch.startsWith(`${job}:`));
      expect(batches).toHaveLength(50);
      // A batch arrives whole, and each publisher's batches arrive in the order it published them.
      const seqs = batches.flatMap((batch) => batch.split(',').map((id) => Number(id.split(':')[1])));
      expect(seqs).toEqual(Array.from({ length: 150 }, (_, index) => index + 1));
    }
  });

  it('carries job events intact, and skips empty batches', async () => {
    const prefix = newPrefix();
    const publisher = await openBus(prefix, 'publisher');
    const listener = await openBus(prefix, 'listener');
    const received: JobEvent[][] = [];
    listener.onJobEvents((events) => received.push(events));
    const sent = [event('j1', 1, 'job.created'), { ...event('j1', 2, 'job.progress'), data: { progress: 40, note: 'ünïcödé ✓' } }];
    publisher.publishJobEvents([]);
    publisher.publishJobEvents(sent);
    await waitUntil(() => received.length >= 1, 'the batch');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(received).toEqual([sent]);
  });

  it('delivers control messages to every process in order, separately from job events', async () => {
    const prefix = newPrefix();
    const first = await openBus(prefix, 'first');
    const second = await openBus(prefix, 'second');
    const controls: { first: ControlMessage[]; second: ControlMessage[] } = { first: [], second: [] };
    const jobBatches: JobEvent[][] = [];
    first.onControl((message) => controls.first.push(message));
    second.onControl((message) => controls.second.push(message));
    first.onJobEvents((events) => jobBatches.push(events));
    second.onJobEvents((events) => jobBatches.push(events));

    const sent: ControlMessage[] = [
      { type: 'apiKey.revoked', apiKeyId: 'k1' },
      { type: 'user.sessionsRevoked', userId: 'u1' },
      { type: 'apiKey.revoked', apiKeyId: 'k2' },
    ];
    for (const message of sent) first.publishControl(message);
    await waitUntil(() => controls.first.length >= 3 && controls.second.length >= 3, 'the control messages');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(controls.first).toEqual(sent);
    expect(controls.second).toEqual(sent);
    expect(jobBatches).toEqual([]);
  });

  it('keeps processes on different prefixes apart', async () => {
    const ours = await openBus(newPrefix(), 'ours');
    const theirs = await openBus(newPrefix(), 'theirs');
    const heardByOurs: JobEvent[][] = [];
    ours.onJobEvents((events) => heardByOurs.push(events));
    theirs.publishJobEvents([event('x', 1)]);
    ours.publishJobEvents([event('y', 1)]);
    await waitUntil(() => heardByOurs.length >= 1, 'our own batch');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(heardByOurs.map((events) => events[0]?.jobId)).toEqual(['y']);
  });

  it('ignores a malformed message and a failing listener without losing later events', async () => {
    const prefix = newPrefix();
    const { logger, lines } = memoryLogger();
    const bus = await openBus(prefix, 'bus', logger);
    const seen: number[] = [];
    bus.onJobEvents(() => {
      throw new Error('listener bug');
    });
    bus.onJobEvents((events) => seen.push(...events.map((e) => e.seq)));
    const raw = testRedisClient();
    await raw.connect();
    cleanups.push(async () => raw.disconnect());
    await raw.publish(`${prefix}events:jobs`, 'not json {');
    bus.publishJobEvents([event('j', 1)]);
    bus.publishJobEvents([event('j', 2)]);
    await waitUntil(() => seen.length >= 2, 'the events after the malformed one');
    expect(seen).toEqual([1, 2]);
    expect(lines.some((line) => line['msg'] === 'ignoring a malformed event bus message')).toBe(true);
    expect(lines.filter((line) => line['msg'] === 'an event bus listener failed')).toHaveLength(2);
  });

  it('closes cleanly: sends what was published, quits both connections, then delivers nothing', async () => {
    const prefix = newPrefix();
    const closing = await openBus(prefix, 'closing');
    const staying = await openBus(prefix, 'staying');
    const heardByStaying: number[] = [];
    const heardByClosed: number[] = [];
    staying.onJobEvents((events) => heardByStaying.push(...events.map((e) => e.seq)));
    closing.onJobEvents((events) => heardByClosed.push(...events.map((e) => e.seq)));
    const clients = await connectionsNamed('closing');

    // Published just before close: QUIT waits for it.
    closing.publishJobEvents([event('j', 1)]);
    await closing.close();
    await closing.close();
    expect(clients).toHaveLength(2);
    await waitUntil(() => heardByStaying.length >= 1, 'the last event of the closed bus');
    // Publishing on a closed bus is a no-op, not an error.
    closing.publishJobEvents([event('j', 2)]);
    closing.publishControl({ type: 'apiKey.revoked', apiKeyId: 'k' });
    staying.publishJobEvents([event('j', 3)]);
    await waitUntil(() => heardByStaying.length >= 2, 'the staying bus to hear its own event');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(heardByStaying).toEqual([1, 3]);
    expect(heardByClosed.filter((seq) => seq > 1)).toEqual([]);
    // The server has dropped both connections (QUIT is answered just before the socket closes, hence the poll).
    let remaining = await connectionsNamed('closing');
    for (const deadline = Date.now() + 10_000; remaining.length > 0 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      remaining = await connectionsNamed('closing');
    }
    expect(remaining).toEqual([]);
    // Pub/sub leaves no keys behind.
    expect(await countKeys(prefix)).toBe(0);
  });

  it('feeds a JobEventHub that delivers a job followed from another process with no gap and no duplicate', async () => {
    const prefix = newPrefix();
    const worker = await openBus(prefix, 'worker');
    const api = await openBus(prefix, 'api');
    // The job's stored events, written by the "worker" before it publishes them (as the engine does).
    const stored: JobEvent[] = [];
    const hub = new JobEventHub(api, async (jobId, afterSeq, limit) => {
      // A slow read, so live events arrive while the replay is still running.
      await new Promise((resolve) => setTimeout(resolve, 20));
      return stored.filter((e) => e.jobId === jobId && e.seq > afterSeq).slice(0, limit);
    });
    cleanups.push(async () => hub.close());

    const commit = (events: JobEvent[]) => {
      stored.push(...events);
      worker.publishJobEvents(events);
    };
    commit([event('job-1', 1, 'job.created')]);
    commit([event('job-1', 2, 'job.active'), event('job-1', 3)]);
    const seen: number[] = [];
    let caughtUpAt = -1;
    hub.follow({ jobId: 'job-1', fromSeq: 0, deliver: (e) => seen.push(e.seq), caughtUp: (seq) => (caughtUpAt = seq) });
    for (let seq = 4; seq < 200; seq += 2) commit([event('job-1', seq), event('job-1', seq + 1)]);
    commit([event('job-1', 200, 'job.completed')]);
    // Another job's events on the same bus must not reach this follower.
    commit([event('job-2', 1, 'job.created')]);

    await waitUntil(() => seen.length >= 200, 'all 200 events of the job', 10_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seen).toEqual(Array.from({ length: 200 }, (_, index) => index + 1));
    expect(caughtUpAt).toBeGreaterThanOrEqual(3);
  });

  it.skipIf(!canStartRedis)('survives a Redis restart: publishing during the outage fails quietly, and delivery resumes', async () => {
    const server = await startPrivateRedis();
    cleanups.push(() => server.stop());
    const prefix = testPrefix();
    const { logger, lines } = memoryLogger();
    const first = await openBus(prefix, 'first', logger, server.url);
    const second = await openBus(prefix, 'second', memoryLogger().logger, server.url);
    const heard: { first: number[]; second: number[] } = { first: [], second: [] };
    first.onJobEvents((events) => heard.first.push(...events.filter((e) => e.jobId === 'j').map((e) => e.seq)));
    second.onJobEvents((events) => heard.second.push(...events.filter((e) => e.jobId === 'j').map((e) => e.seq)));
    let resumed = 0;
    second.onResume(() => (resumed += 1));
    // A live client of another job, on the second process: its final event is lost in the outage.
    const stored = [event('x', 1, 'job.created')];
    const hub = new JobEventHub(second, async (_jobId, afterSeq) => stored.filter((e) => e.seq > afterSeq));
    cleanups.push(async () => hub.close());
    const followed: number[] = [];
    hub.follow({ jobId: 'x', fromSeq: 0, deliver: (e) => followed.push(e.seq) });
    first.publishJobEvents([event('j', 1)]);
    await waitUntil(() => heard.first.length === 1 && heard.second.length === 1 && followed.length === 1, 'the first event');

    await server.stop();
    first.publishJobEvents([event('j', 2)]);
    stored.push(event('x', 2, 'job.completed'));
    first.publishJobEvents([event('x', 2, 'job.completed')]);
    await waitUntil(() => lines.some((line) => line['msg'] === 'could not publish an event to Redis; live clients will catch up from storage'), 'the lost publish to be logged', 15_000);

    const restarted = await startPrivateRedis([], { port: server.port });
    cleanups.push(() => restarted.stop());
    // Both subscribers resubscribe by themselves (reconnecting at most 2 s apart); publish until each hears again.
    let seq = 100;
    const deadline = Date.now() + 20_000;
    while (!(heard.first.some((s) => s >= 100) && heard.second.some((s) => s >= 100))) {
      if (Date.now() > deadline) throw new Error('delivery did not resume within 20 s');
      first.publishJobEvents([event('j', seq)]);
      seq += 1;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    second.publishJobEvents([event('j', 1000)]);
    await waitUntil(() => heard.first.includes(1000) && heard.second.includes(1000), 'an event after recovery');
    // Nothing is delivered twice, the event published during the outage is gone (pub/sub keeps
    // nothing), and once both had resubscribed they saw the same sequence.
    expect(new Set(heard.first).size).toBe(heard.first.length);
    expect(new Set(heard.second).size).toBe(heard.second.length);
    expect([...heard.first, ...heard.second]).not.toContain(2);
    const bothListening = Math.max(...[heard.first, heard.second].map((seen) => seen.find((s) => s >= 100) ?? 0));
    const from = (seen: number[]) => seen.filter((s) => s >= bothListening);
    expect(from(heard.first)).toEqual(from(heard.second));
    expect(from(heard.first).at(-1)).toBe(1000);
    // Back, the bus said so, and the follower read the lost final event from storage.
    await waitUntil(() => followed.length === 2, 'the lost event read from storage');
    expect(followed).toEqual([1, 2]);
    expect(resumed).toBeGreaterThanOrEqual(1);
  });
});

/** The bus's connections as Redis lists them (CLIENT LIST), found by the connection name. */
async function connectionsNamed(busName: string): Promise<string[]> {
  const raw = testRedisClient();
  await raw.connect();
  try {
    const list = String(await raw.client('LIST'));
    return list
      .split('\n')
      .map((line) => /name=(\S*)/.exec(line)?.[1] ?? '')
      .filter((name) => name === `jobline:all:${busName}-publisher:${process.pid}` || name === `jobline:all:${busName}-subscriber:${process.pid}`);
  } finally {
    raw.disconnect();
  }
}
