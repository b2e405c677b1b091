import { z } from 'zod';

/**
 * An email address as browsers' `<input type="email">` accepts it: a dot in the domain is not
 * required, so self-hosted addresses such as `admin@localhost` (the generated first admin's)
 * are valid.
 */
export function emailAddress() {
  return z.email({ pattern: z.regexes.html5Email, error: 'must be an email address' });
}
