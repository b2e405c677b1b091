import { toError } from '../../utils/errors.js';
import type { TicketDispatch } from './dispatch.js';
import { within, type InstanceState } from './state.js';

/** How long the engine waits on a BullMQ call after a commit before it moves on and leaves the call to the reconciler. */
const BULL_CALL_MS = 2000;

/**
 * A BullMQ call made after a commit. BullMQ's connection holds commands while Redis is away, so
 * the engine never waits on one for long: when Redis is away, or the call fails or takes more
 * than BULL_CALL_MS, the reconciler is asked to set things right from PostgreSQL. (A call that
 * goes through late does no harm: tickets are idempotent, and a stale one is dropped when taken.)
 */
export async function toBullMq(state: InstanceState, dispatch: TicketDispatch, what: string, call: () => Promise<unknown>): Promise<void> {
  if (!dispatch.ready) {
    state.reconcileWanted = true;
    return;
  }
  const pending = call().then(() => true);
  pending.catch(() => undefined);
  try {
    if (!(await within(BULL_CALL_MS, pending))) {
      state.logger.warn(`${what} on BullMQ is taking long; the reconciler will see to it`);
      state.reconcileWanted = true;
    }
  } catch (error) {
    state.logger.warn({ err: toError(error) }, `${what} on BullMQ failed; the reconciler will see to it`);
    state.reconcileWanted = true;
  }
}
