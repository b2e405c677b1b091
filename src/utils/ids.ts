import { randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';

/** A UUIDv7: time-ordered, so ids sort by creation time. */
export function newId(): string {
  return uuidv7();
}

/** A random URL-safe secret of `bytes` bytes of entropy. */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}
