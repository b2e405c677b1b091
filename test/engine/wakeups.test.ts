import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Wakeups } from '../../src/engine/bullmq/wakeups.js';

describe('wake-ups for delayed jobs', () => {
  beforeEach(() => vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => vi.useRealTimers());

  it('wakes a queue at each of its due times, not only the earliest, once per time', () => {
    const woken: [string, number][] = [];
    const wakeups = new Wakeups(() => Date.now(), (queue) => woken.push([queue, Date.now()]));
    expect(wakeups.add('emails', 1_002_000)).toBe(1_002_000);
    expect(wakeups.add('emails', 1_001_000)).toBe(1_001_000);
    expect(wakeups.add('reports', 1_001_010)).toBe(1_001_050);
    // The same time again (or within its 50 ms bucket) is already known.
    expect(wakeups.add('emails', 1_000_990)).toBeNull();
    vi.advanceTimersByTime(3000);
    expect(woken).toEqual([
      ['emails', 1_001_000],
      ['reports', 1_001_050],
      ['emails', 1_002_000],
    ]);
    wakeups.stop();
  });

  it('wakes nobody once stopped', () => {
    const woken: string[] = [];
    const wakeups = new Wakeups(() => Date.now(), (queue) => woken.push(queue));
    wakeups.add('emails', 1_000_500);
    wakeups.stop();
    vi.advanceTimersByTime(1000);
    expect(woken).toEqual([]);
    expect(wakeups.add('emails', 1_002_000)).toBeNull();
  });
});
