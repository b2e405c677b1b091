import type { Kysely, Selectable } from 'kysely';
import { isUniqueViolation } from '../db/errors.js';
import type { Database, UsersTable } from '../db/schema.js';
import type { ControlMessage } from '../events/index.js';
import type { Clock } from '../utils/clock.js';
import { toIso } from '../utils/clock.js';
import { hashPassword, verifyPassword } from '../utils/crypto.js';
import { errors } from '../utils/errors.js';
import { newId } from '../utils/ids.js';
import { decodeCursor, encodeCursor, type Page } from '../utils/pagination.js';
import type { UserRole } from '../access/principal.js';



export interface User {
  id: string;
  email: string;
  role: UserRole;
  createdAt: string;
}

export type UserRow = Selectable<UsersTable>;

export function toUser(row: UserRow): User {
  return { id: row.id, email: row.email, role: row.role, createdAt: toIso(row.created_at) };
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export interface UserUpdate {
  email?: string;
  password?: string;
  role?: UserRole;
}

/** Users and their passwords. Knows nothing of HTTP or tokens. */
export class UserService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    /** Told when a user's sessions end, so live connections close too. */
    private readonly notify: (message: ControlMessage) => void = () => undefined,
  ) {}

  async create(input: { email: string; password: string; role: UserRole }): Promise<User> {
    const email = normalizeEmail(input.email);
    const passwordHash = await hashPassword(input.password);
    const now = this.clock.now();
    const row: UserRow = {
      id: newId(),
      email,
      password_hash: passwordHash,
      role: input.role,
      token_version: 0,
      created_at: now,
      updated_at: now,
    };
    const existing = await this.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
    if (existing) throw errors.emailTaken();
    try {
      await this.db.insertInto('users').values(row).execute();
    } catch (error) {
      // Two registrations racing for one email: the unique index decides.
      if (isUniqueViolation(error)) throw errors.emailTaken();
      throw error;
    }
    return toUser(row);
  }

  async count(): Promise<number> {
    const result = await this.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(result.n);
  }

  async findRowByEmail(email: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('email', '=', normalizeEmail(email)).executeTakeFirst();
  }

  async findRow(id: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async get(id: string): Promise<User> {
    const row = await this.findRow(id);
    if (!row) throw errors.userNotFound();
    return toUser(row);
  }

  /** Newest first, by id (UUIDv7 ids sort by creation time). */
  async list(options: { limit: number; cursor?: string | undefined }): Promise<Page<User>> {
    let query = this.db.selectFrom('users').selectAll().orderBy('id', 'desc').limit(options.limit + 1);
    if (options.cursor) {
      const [lastId] = decodeCursor('users', options.cursor);
      query = query.where('id', '<', String(lastId));
    }
    const rows = await query.execute();
    const page = rows.slice(0, options.limit);
    const last = page.at(-1);
    return {
      items: page.map(toUser),
      nextCursor: rows.length > options.limit && last ? encodeCursor('users', [last.id]) : null,
    };
  }

  async update(id: string, update: UserUpdate): Promise<User> {
    const row = await this.findRow(id);
    if (!row) throw errors.userNotFound();
    if (update.role === 'user' && row.role === 'admin') await this.assertAnotherAdmin(id);
    const email = update.email === undefined ? undefined : normalizeEmail(update.email);
    if (email !== undefined && email !== row.email) {
      const taken = await this.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
      if (taken) throw errors.emailTaken();
    }
    const passwordHash = update.password === undefined ? undefined : await hashPassword(update.password);
    // A new password or a lost role ends the sessions issued before it.
    const endsSessions = passwordHash !== undefined || (update.role !== undefined && update.role !== row.role);
    await this.db
      .updateTable('users')
      .set({
        ...(email !== undefined ? { email } : {}),
        ...(passwordHash !== undefined ? { password_hash: passwordHash } : {}),
        ...(update.role !== undefined ? { role: update.role } : {}),
        ...(endsSessions ? { token_version: row.token_version + 1 } : {}),
        updated_at: this.clock.now(),
      })
      .where('id', '=', id)
      .execute();
    if (endsSessions) {
      await this.revokeRefreshTokens(id);
      this.notify({ type: 'user.sessionsRevoked', userId: id });
    }
    return this.get(id);
  }

  async changePassword(id: string, currentPassword: string, password: string): Promise<User> {
    const row = await this.findRow(id);
    if (!row) throw errors.userNotFound();
    if (!(await verifyPassword(row.password_hash, currentPassword))) throw errors.wrongPassword();
    return this.update(id, { password });
  }

  async delete(id: string): Promise<void> {
    const row = await this.findRow(id);
    if (!row) throw errors.userNotFound();
    if (row.role === 'admin') await this.assertAnotherAdmin(id);
    await this.db.deleteFrom('users').where('id', '=', id).execute();
    this.notify({ type: 'user.sessionsRevoked', userId: id });
  }

  async revokeRefreshTokens(userId: string): Promise<void> {
    await this.db
      .updateTable('refresh_tokens')
      .set({ revoked_at: this.clock.now() })
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .execute();
  }

  private async assertAnotherAdmin(exceptId: string): Promise<void> {
    const other = await this.db
      .selectFrom('users')
      .select('id')
      .where('role', '=', 'admin')
      .where('id', '!=', exceptId)
      .executeTakeFirst();
    if (!other) throw errors.lastAdmin();
  }
}
