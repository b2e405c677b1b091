import { afterEach, describe, expect, it, vi } from 'vitest';
import { atTime } from '../../src/utils/timers.js';

const DAY_MS = 86_400_000;

describe('atTime', () => {
  afterEach(() => vi.useRealTimers());

  it('waits out a time further off than setTimeout allows, in steps', () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    atTime(Date.now() + 60 * DAY_MS, fn);
    vi.advanceTimersByTime(59 * DAY_MS);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(DAY_MS);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('fires at once for a time that has passed, and not at all once cancelled', () => {
    vi.useFakeTimers();
    const passed = vi.fn();
    atTime(Date.now() - 1000, passed);
    vi.advanceTimersByTime(0);
    expect(passed).toHaveBeenCalledTimes(1);
    const cancelled = vi.fn();
    const timer = atTime(Date.now() + 40 * DAY_MS, cancelled);
    vi.advanceTimersByTime(30 * DAY_MS);
    timer.cancel();
    vi.advanceTimersByTime(20 * DAY_MS);
    expect(cancelled).not.toHaveBeenCalled();
  });
});
