import type { JobEvent } from '../engine/types.js';
import { toError } from '../utils/errors.js';
import type { EventBus } from './index.js';

const REPLAY_PAGE = 1000;
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
}

export interface Follower {
  close(): void;
}

interface JobFollower extends FollowOptions {
  lastSeq: number;
  /** Live events that arrived while stored ones were being replayed. */
  buffer: JobEvent[] | null;
  /** Serializes replays and gap repairs so delivery stays in order. */
  chain: Promise<void>;
  closed: boolean;
  /** The initial replay is done but `caughtUp` waits for a gap repair it started. */
  caughtUpPending: boolean;
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
  private readonly unsubscribe: () => void;

  constructor(
    bus: EventBus,
    private readonly loadEvents: EventLoader,
  ) {
    this.unsubscribe = bus.onJobEvents((events) => {
      for (const event of events) this.dispatch(event);
    });
  }

  /** Every event of every job (filtered by the caller): queue and "all" subscriptions. */
  onEvent(listener: (event: JobEvent) => void): () => void {
    this.wildcard.add(listener);
    return () => this.wildcard.delete(listener);
  }

  follow(options: FollowOptions): Follower {
    const follower: JobFollower = {
      ...options,
      lastSeq: options.fromSeq,
      buffer: [],
      chain: Promise.resolve(),
      closed: false,
      caughtUpPending: false,
    };
    let set = this.byJob.get(options.jobId);
    if (!set) {
      set = new Set();
      this.byJob.set(options.jobId, set);
    }
    set.add(follower);
    follower.chain = this.replay(follower).then(() => {
      follower.caughtUpPending = true;
      this.drain(follower);
    });
    follower.chain.catch((error: unknown) => follower.onError?.(toError(error)));
    return { close: () => this.remove(follower) };
  }

  close(): void {
    this.unsubscribe();
    this.byJob.clear();
    this.wildcard.clear();
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
    for (const follower of followers) {
      if (follower.buffer) follower.buffer.push(event);
      else this.offer(follower, event);
    }
  }

  /** Delivers a live event, or repairs a gap from storage first (a bus may drop or reorder across processes). */
  private offer(follower: JobFollower, event: JobEvent): void {
    if (follower.closed || event.seq <= follower.lastSeq) return;
    if (event.seq === follower.lastSeq + 1) {
      follower.lastSeq = event.seq;
      follower.deliver(event);
      return;
    }
    follower.buffer = [event];
    follower.chain = follower.chain.then(() => this.replay(follower)).then(() => this.drain(follower));
    follower.chain.catch((error: unknown) => follower.onError?.(toError(error)));
  }

  /**
   * Delivers what was buffered during a replay. Offering may find a gap and start a repair
   * (buffering again); only when no repair is pending has the follower caught up.
   */
  private drain(follower: JobFollower): void {
    const buffered = follower.buffer ?? [];
    follower.buffer = null;
    for (const event of buffered.sort((a, b) => a.seq - b.seq)) this.offer(follower, event);
    if (follower.buffer === null && follower.caughtUpPending && !follower.closed) {
      follower.caughtUpPending = false;
      follower.caughtUp?.(follower.lastSeq);
    }
  }

  private async replay(follower: JobFollower): Promise<void> {
    for (;;) {
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
