/** The longest delay setTimeout takes; a longer one fires at once. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export interface TimerHandle {
  cancel(): void;
}

/**
 * Calls `fn` at the epoch time `at` (at once if it has passed), however far off: a delay longer
 * than setTimeout allows (about 24.8 days, an API key's expiry for one) is waited out in steps.
 * The timer does not keep the process alive.
 */
export function atTime(at: number, fn: () => void, now: () => number = Date.now): TimerHandle {
  let handle: NodeJS.Timeout | null = null;
  const arm = () => {
    const wait = Math.max(0, at - now());
    handle = setTimeout(wait > MAX_DELAY_MS ? arm : fn, Math.min(wait, MAX_DELAY_MS));
    handle.unref();
  };
  arm();
  return {
    cancel: () => {
      if (handle) clearTimeout(handle);
      handle = null;
    },
  };
}
