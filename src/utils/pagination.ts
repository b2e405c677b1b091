import { errors } from './errors.js';

/**
 * Opaque cursors: the client gets a base64url string and hands it back unchanged. Inside is
 * the sort key of the last item served, tagged with the listing it belongs to.
 */
export function encodeCursor(listing: string, position: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify([listing, ...position])).toString('base64url');
}

export function decodeCursor(listing: string, cursor: string): (string | number)[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw errors.invalidCursor();
  }
  if (!Array.isArray(parsed) || parsed[0] !== listing) throw errors.invalidCursor();
  const position = parsed.slice(1);
  if (!position.every((part) => typeof part === 'string' || typeof part === 'number')) {
    throw errors.invalidCursor();
  }
  return position as (string | number)[];
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
