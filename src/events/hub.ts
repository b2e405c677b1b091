import type { JobEvent } from '../engine/types.js';
import { toError } from '../utils/errors.js';
import type { EventBus } from './index.js';

const REPLAY_PAGE = 1000;
/** Live events a follower holds while it replays; past this it drops them and reads them from storage later. */
const MAX_BUFFERED = 10_000;
const FINAL_EVENTS = new Set(['job.completed', 'job.failed', 'job.cancelled']);

export function isFinalEvent(event: JobEvent): boolean {
  return FINAL_EVENTS.has(event.type);
}

/** Reads a job's stored events after a seq, in order (the engine's listEvents). */
export type EventLoader = (jobId: string, afterSeq: number, limit: number) => Promise<JobEvent[]>;

export interface FollowOptions {
  jobId: string;
  /** Deliver events with a seq above this one. */
  fromSeq: number;
  /** Called for each event, in seq order, each seq once. */
  deliver(event: JobEvent): void;
  /** Called once replay has caught up; from then on `deliver` only sees live events. */
  caughtUp?(lastSeq: number): void;
  onError?(error: Error): void;
  /**
   * Back-pressure: before each page of stored events, the hub waits for what this returns (a
   * slow client's send buffer to drain, say); undefined means go on.
   */
  ready?(): Promise<void> | undefined;
}

export interface Follower {
  close(): void;
}

interface JobFollower extends FollowOptions {
  lastSeq: number;
  /** Live events that arrived while stored ones were being replayed. */
  buffer: JobEvent[] | null;
  /** The buffer overflowed and was dropped: read storage again before draining. */
  reread: boolean;
  /** Serializes replays and gap repairs so delivery stays in order. */
  chain: Promise<void>;
  closed: boolean;
  /** Replays scheduled and not yet drained: `caughtUp` waits until none is left. */
  repairs: number;
  caughtUpSent: boolean;
}

/**
 * Fans committed job events out to live consumers (Socket.IO, SSE, long polls) in this process.
 * A follower of one job gets stored events after its `fromSeq`, then live ones, with no gap and
 * no duplicate: it listens before it reads, buffers what arrives meanwhile, and skips any seq it
 * has already delivered.
 */
export class JobEventHub {
  private readonly byJob = new Map<string, Set<JobFollower>>();
  private readonly wildcard = new Set<(event: JobEvent) => void>();
  private readonly resumeListeners = new Set<() => void>();
  private readonly unsubscribe: () => void;
  private readonly stopResume: () => void;

  constructor(
    bus: EventBus,
    private readonly loadEvents: EventLoader,
  ) {
    this.unsubscribe = bus.onJobEvents((events) => {
      for (const event of events) this.dispatch(event);
    });
    this.stopResume = bus.onResume(() => this.resume());
  }

  /** Every event of every job (filtered by the caller): queue and "all" subscriptions. */
  onEvent(listener: (event: JobEvent) => void): () => void {
    this.wildcard.add(listener);
    return () => this.wildcard.delete(listener);
  }

  /**
   * Called after the bus lost messages for a while (see EventBus.onResume), once every follower's
   * catch-up from storage is under way: consumers that hold no follower catch up their own way.
   */
  onResume(listener: () => void): () => void {
    this.resumeListeners.add(listener);
    return () => this.resumeListeners.delete(listener);
  }

  follow(options: FollowOptions): Follower {
    const follower: JobFollower = {
      ...options,
      lastSeq: options.fromSeq,
      buffer: [],
      reread: false,
      chain: Promise.resolve(),
      closed: false,
      repairs: 0,
      caughtUpSent: false,
    };
    let set = this.byJob.get(options.jobId);
    if (!set) {
      set = new Set();
      this.byJob.set(options.jobId, set);
    }
    set.add(follower);
    // The first read starts now: a reader expects to see what was stored when it asked.
    this.repair(follower, true);
    return { close: () => this.remove(follower) };
  }

  close(): void {
    this.unsubscribe();
    this.stopResume();
    this.byJob.clear();
    this.wildcard.clear();
    this.resumeListeners.clear();
  }

  get followerCount(): number {
    let count = 0;
    for (const set of this.byJob.values()) count += set.size;
    return count;
  }

  private dispatch(event: JobEvent): void {
    for (const listener of this.wildcard) listener(event);
    const followers = this.byJob.get(event.jobId);
    if (!followers) return;
    for (const follower of followers) this.offer(follower, event);
  }

  /** The bus heard nothing for a while: every follower reads what it may have missed from storage. */
  private resume(): void {
    for (const set of this.byJob.values()) for (const follower of set) this.repair(follower);
    for (const listener of this.resumeListeners) listener();
  }

  /**
   * Delivers a live event; buffers it while a replay runs; or repairs a gap from storage first (a
   * bus may drop or reorder across processes).
   */
  private offer(follower: JobFollower, event: JobEvent): void {
    if (follower.closed || event.seq <= follower.lastSeq) return;
    if (follower.buffer) {
      // Every live event is stored before it is published: what is dropped here is read again.
      if (follower.buffer.length >= MAX_BUFFERED) {
        follower.buffer = [];
        follower.reread = true;
      }
      follower.buffer.push(event);
      return;
    }
    if (event.seq === follower.lastSeq + 1) {
      follower.lastSeq = event.seq;
      follower.deliver(event);
      return;
    }
    follower.buffer = [event];
    this.repair(follower);
  }

  /** Replays stored events after the follower's last seq, buffering live ones meanwhile, then drains. */
  private repair(follower: JobFollower, now = false): void {
    follower.buffer ??= [];
    follower.repairs += 1;
    const replayed = now ? this.replay(follower) : follower.chain.then(() => this.replay(follower));
    follower.chain = replayed.then(() => {
      follower.repairs -= 1;
      this.drain(follower);
    });
    // A failed read ends the follower: its consumer is told once, and nothing more is delivered.
    follower.chain.catch((error: unknown) => {
      if (follower.closed) return;
      this.remove(follower);
      follower.onError?.(toError(error));
    });
  }

  /**
   * Delivers what was buffered once no replay is left to run. Offering may find a gap and start
   * a repair (buffering again); only when none is pending has the follower caught up.
   */
  private drain(follower: JobFollower): void {
    if (follower.repairs > 0 || follower.closed) return;
    if (follower.reread) {
      follower.reread = false;
      this.repair(follower);
      return;
    }
    const buffered = follower.buffer ?? [];
    follower.buffer = null;
    for (const event of buffered.sort((a, b) => a.seq - b.seq)) this.offer(follower, event);
    if (follower.buffer === null && !follower.caughtUpSent && !follower.closed) {
      follower.caughtUpSent = true;
      follower.caughtUp?.(follower.lastSeq);
    }
  }

  private async replay(follower: JobFollower): Promise<void> {
    for (;;) {
      const waiting = follower.ready?.();
      if (waiting) await waiting;
      if (follower.closed) return;
      const events = await this.loadEvents(follower.jobId, follower.lastSeq, REPLAY_PAGE);
      for (const event of events) {
        if (follower.closed) return;
        if (event.seq <= follower.lastSeq) continue;
        follower.lastSeq = event.seq;
        follower.deliver(event);
      }
      if (events.length < REPLAY_PAGE) return;
    }
  }

  private remove(follower: JobFollower): void {
    follower.closed = true;
    const set = this.byJob.get(follower.jobId);
    if (!set) return;
    set.delete(follower);
    if (set.size === 0) this.byJob.delete(follower.jobId);
  }
}
