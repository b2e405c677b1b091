import { isUniqueViolation } from '../db/errors.js';
import { errors } from '../utils/errors.js';
import { RefusedChange, TransitionError } from './changes.js';

/**
 * The one translation, for both engines, of what a plan or a store refused into the AppError a
 * caller sees, so the message is the same whatever the datastore. Anything else passes through.
 * `singletonHolder`: for a manual retry, the live job holding the row's singleton key (the store
 * looks it up once its unique index refused the retry).
 */
export function toAppError(error: unknown, singletonHolder?: string | null): unknown {
  if (error instanceof TransitionError || error instanceof RefusedChange) return errors.jobStateConflict(error.message);
  if (singletonHolder !== undefined && isUniqueViolation(error)) return errors.singletonTaken(singletonHolder ?? '');
  return error;
}

/** A manual retry its store refused because a live job holds the singleton key (the job stays as it is). */
export function isSingletonRefusal(error: unknown): boolean {
  return isUniqueViolation(error);
}
