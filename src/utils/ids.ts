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

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}
