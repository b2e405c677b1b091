import type { Logger } from 'pino';
import { AppError } from '../utils/errors.js';
import { randomToken } from '../utils/ids.js';
import type { UserService } from './userService.js';

export const DEFAULT_ADMIN_EMAIL = 'admin@localhost';

/**
 * On a database with no users, creates the first administrator: from the configured email and
 * password, or with a generated password printed once. Returns the email created, if any.
 */
export async function ensureFirstAdmin(
  users: UserService,
  configured: { email: string | null; password: string | null },
  logger: Logger,
): Promise<string | null> {
  if ((await users.count()) > 0) return null;
  const email = configured.email ?? DEFAULT_ADMIN_EMAIL;
  const password = configured.password ?? randomToken(18);
  try {
    await users.create({ email, password, role: 'admin' });
  } catch (error) {
    // Another process starting at the same moment created it first.
    if (error instanceof AppError && error.code === 'JOBLINE_EMAIL_TAKEN') return null;
    throw error;
  }
  if (configured.password) {
    logger.info({ email }, 'created the first admin from JOBLINE_ADMIN_EMAIL / JOBLINE_ADMIN_PASSWORD');
  } else {
    logger.warn(
      `created the first admin: email ${email} password ${password} -- shown only now; change it with PATCH /v1/me`,
    );
  }
  return email;
}
