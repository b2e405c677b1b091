import { describe, expect, it } from 'vitest';
import type { JobEvent } from '../../src/engine/types.js';
import { JobEventHub } from '../../src/events/hub.js';
import { LocalEventBus } from '../../src/events/index.js';
import { ResumableBus } from '../helpers/bus.js';

function event(seq: number, type: JobEvent['type'] = 'job.delta'): JobEvent {
  return { type, jobId: 'j1', seq, at: seq, data: { chunk: seq }, queue: 'q', ownerId: 'o' };
}

/** A store of events, read the way the engine's listEvents reads them. */
function store(events: JobEvent[]) {
  return async (_jobId: string, afterSeq: number, limit: number) => events.filter((e) => e.seq > afterSeq).slice(0, limit);
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

/**
 * A store whose first read takes its snapshot at once but answers only when released, so live
 * events pile up meanwhile; later reads answer at once.
 */
function gatedStore(stored: JobEvent[]) {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let reads = 0;
  const load = async (jobId: string, afterSeq: number, limit: number) => {
    reads += 1;
    const snapshot = await store([...stored])(jobId, afterSeq, limit);
    if (reads === 1) await gate;
    return snapshot;
  };
  return { load, release: () => release(), reads: () => reads };
}

describe('the job event hub', () => {
  it('replays stored events, then live ones, without duplicates when both overlap', async () => {
    const bus = new LocalEventBus();
    const stored = [event(1), event(2), event(3)];
    const hub = new JobEventHub(bus, store(stored));
    const seen: number[] = [];
    hub.follow({ jobId: 'j1', fromSeq: 0, deliver: (e) => seen.push(e.seq) });
    // Published while the replay is still reading: 3 is also stored, 4 is new.
    bus.publishJobEvents([event(3), event(4)]);
    await settle();
    bus.publishJobEvents([event(5)]);
    expect(seen).toEqual([1, 2, 3, 4, 5]);
  });

  it('repairs a gap in the live stream from storage', async () => {
    const bus = new LocalEventBus();
    const stored = [event(1), event(2)];
    const hub = new JobEventHub(bus, store(stored));
    const seen: number[] = [];
    hub.follow({ jobId: 'j1', fromSeq: 2, deliver: (e) => seen.push(e.seq) });
    await settle();
    expect(seen).toEqual([]);
    // 3 to 6 are committed, but 3 and 4 never arrive on the bus (a dropped message), and 6 comes before 5.
    stored.push(event(3), event(4), event(5), event(6));
    bus.publishJobEvents([event(6)]);
    bus.publishJobEvents([event(5)]);
    await settle();
    expect(seen).toEqual([3, 4, 5, 6]);
  });

  it('starts after fromSeq and reports when it has caught up', async () => {
    const bus = new LocalEventBus();
    const hub = new JobEventHub(bus, store([1, 2, 3, 4].map((seq) => event(seq))));
    const seen: number[] = [];
    let caughtUpAt = -1;
    hub.follow({ jobId: 'j1', fromSeq: 2, deliver: (e) => seen.push(e.seq), caughtUp: (seq) => (caughtUpAt = seq) });
    await settle();
    expect(seen).toEqual([3, 4]);
    expect(caughtUpAt).toBe(4);
  });

  it('stops delivering once closed', async () => {
    const bus = new LocalEventBus();
    const hub = new JobEventHub(bus, store([]));
    const seen: number[] = [];
    const follower = hub.follow({ jobId: 'j1', fromSeq: 0, deliver: (e) => seen.push(e.seq) });
    await settle();
    bus.publishJobEvents([event(1)]);
    follower.close();
    bus.publishJobEvents([event(2)]);
    expect(seen).toEqual([1]);
    expect(hub.followerCount).toBe(0);
  });
});

describe('the job event hub, catching up', () => {
  it('reports catching up only after repairing a gap found while draining the replay buffer', async () => {
    const bus = new LocalEventBus();
    const stored = [1, 2, 3, 4, 5].map((seq) => event(seq));
    // The first read sees 1 to 5 only, and waits, so live events pile up in the buffer meanwhile.
    const gated = gatedStore(stored);
    const hub = new JobEventHub(bus, gated.load);
    const seen: number[] = [];
    let caughtUpAt = -1;
    hub.follow({ jobId: 'j1', fromSeq: 0, deliver: (e) => seen.push(e.seq), caughtUp: (seq) => (caughtUpAt = seq) });
    // 6 is committed but its message is late; 7 arrives while the replay is still reading.
    stored.push(event(6), event(7));
    bus.publishJobEvents([event(7)]);
    gated.release();
    await settle();
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(caughtUpAt).toBe(7);
    // The gap (6) was read from storage by a second read.
    expect(gated.reads()).toBeGreaterThanOrEqual(2);
  });
});

describe('the job event hub, after the bus lost events', () => {
  it('reads what each follower missed from storage when the bus resumes, though no later event comes', async () => {
    const bus = new ResumableBus();
    const stored = [event(1), event(2)];
    const hub = new JobEventHub(bus, store(stored));
    const seen: number[] = [];
    const caughtUp: number[] = [];
    hub.follow({ jobId: 'j1', fromSeq: 0, deliver: (e) => seen.push(e.seq), caughtUp: (seq) => caughtUp.push(seq) });
    await settle();
    // Committed while the bus was away: the final event among them.
    stored.push(event(3), event(4, 'job.completed'));
    const told: string[] = [];
    hub.onResume(() => told.push('resumed'));
    bus.resume();
    expect(told).toEqual(['resumed']);
    await settle();
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(caughtUp).toEqual([2]);
  });

  it('a resume in the middle of the first replay reads again after it, and reports catching up once, after both', async () => {
    const bus = new ResumableBus();
    const stored = [event(1), event(2)];
    const gated = gatedStore(stored);
    const hub = new JobEventHub(bus, gated.load);
    const seen: number[] = [];
    const caughtUp: number[] = [];
    hub.follow({ jobId: 'j1', fromSeq: 0, deliver: (e) => seen.push(e.seq), caughtUp: (seq) => caughtUp.push(seq) });
    // The first read has its snapshot (1, 2); 3 is committed and its message lost.
    stored.push(event(3));
    bus.resume();
    bus.publishJobEvents([event(4)]);
    stored.push(event(4));
    gated.release();
    await settle();
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(caughtUp).toEqual([4]);
  });

  it('a failed read ends the follower: told once, forgotten, and not read again on a resume', async () => {
    const bus = new ResumableBus();
    let reads = 0;
    const hub = new JobEventHub(bus, async () => {
      reads += 1;
      throw new Error('the store is down');
    });
    const failures: string[] = [];
    hub.follow({ jobId: 'j1', fromSeq: 0, deliver: () => undefined, onError: (error) => failures.push(error.message) });
    await settle();
    bus.resume();
    bus.publishJobEvents([event(5)]);
    await settle();
    expect(failures).toEqual(['the store is down']);
    expect(reads).toBe(1);
    expect(hub.followerCount).toBe(0);
  });
});

describe('the job event hub, with slow consumers', () => {
  it('waits for a consumer that is not ready before reading the next page of stored events', async () => {
    const bus = new LocalEventBus();
    const stored = Array.from({ length: 2500 }, (_, index) => event(index + 1));
    const hub = new JobEventHub(bus, store(stored));
    const seen: number[] = [];
    let drained: () => void = () => undefined;
    let waiting: Promise<void> | undefined;
    hub.follow({
      jobId: 'j1',
      fromSeq: 0,
      deliver: (e) => seen.push(e.seq),
      // Not ready once it holds a page it has not "sent".
      ready: () => (seen.length > 0 ? (waiting ??= new Promise<void>((resolve) => (drained = resolve))) : undefined),
    });
    await settle();
    expect(seen).toHaveLength(1000);
    drained();
    waiting = undefined;
    await settle();
    expect(seen.length).toBeGreaterThanOrEqual(2000);
    drained();
    waiting = undefined;
    await settle();
    drained();
    await settle();
    expect(seen).toEqual(stored.map((e) => e.seq));
  });

  it('holds at most so many live events while it replays, reading the rest from storage again', async () => {
    const bus = new LocalEventBus();
    const stored = [event(1)];
    // The first read sees only 1.
    const gated = gatedStore(stored);
    const hub = new JobEventHub(bus, gated.load);
    const seen: number[] = [];
    hub.follow({ jobId: 'j1', fromSeq: 0, deliver: (e) => seen.push(e.seq) });
    for (let seq = 2; seq <= 25_001; seq += 1) {
      stored.push(event(seq));
      bus.publishJobEvents([event(seq)]);
    }
    gated.release();
    await settle();
    expect(seen).toEqual(stored.map((e) => e.seq));
    // 25,000 live events arrived during the first read: the ones dropped from the buffer were read again.
    expect(gated.reads()).toBeGreaterThanOrEqual(2);
  });
});
