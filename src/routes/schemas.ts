import { z } from 'zod';
import { SCOPES } from '../access/scopes.js';
import { emailAddress } from '../utils/email.js';

/** Schemas several routes share. Each validates requests, types handlers and documents the API. */

export const emailSchema = emailAddress().max(320);
/** New passwords: long enough to resist guessing, short enough that hashing cannot be abused. */
export const newPasswordSchema = z
  .string()
  .min(8, 'must have at least 8 characters')
  .max(1024, 'must have at most 1024 characters');
export const roleSchema = z.enum(['admin', 'user']);
export const idParamsSchema = z.object({ id: z.uuid({ error: 'must be a UUID' }) });

export const userSchema = z
  .object({ id: z.string(), email: z.string(), role: roleSchema, createdAt: z.string() })
  .meta({ id: 'User' });

export const sessionSchema = z
  .object({
    accessToken: z.string(),
    refreshToken: z.string(),
    tokenType: z.literal('Bearer'),
    expiresIn: z.number().int().meta({ description: 'Seconds until the access token expires.' }),
    user: userSchema,
  })
  .meta({ id: 'Session' });

export const scopeSchema = z.enum([...SCOPES, '*']);

export const paginationQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().max(512).optional(),
});

export function pageSchema<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable() });
}

export const bearerSecurity = [{ bearerAuth: [] }];
