/** Storage failures read the same way whichever database raised them. */

/** A unique index refused a row: SQLite says SQLITE_CONSTRAINT_*, PostgreSQL says 23505. */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}
