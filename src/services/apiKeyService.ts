import type { Kysely, Selectable } from 'kysely';
import type { ApiKeysTable, Database } from '../db/schema.js';
import type { ControlMessage } from '../events/index.js';
import type { Clock } from '../utils/clock.js';
import { toIso, toIsoOrNull } from '../utils/clock.js';
import { sha256 } from '../utils/crypto.js';
import { errors } from '../utils/errors.js';
import { newId, randomToken } from '../utils/ids.js';
import type { GrantedScope } from '../access/scopes.js';

/** Every key starts with this, so a leaked key is easy to recognise (and to scan for). */
export const API_KEY_PREFIX = 'jl_';
const SHOWN_PREFIX_LENGTH = API_KEY_PREFIX.length + 8;
/** last_used_at is written at most this often per key, so a busy key does not write on every call. */
const LAST_USED_RESOLUTION_MS = 60_000;

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  scopes: GrantedScope[];
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
}

export interface VerifiedApiKey {
  id: string;
  userId: string;
  scopes: GrantedScope[];
  /** When the key stops working (epoch ms), or null. */
  expiresAt: number | null;
}

function toApiKey(row: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: JSON.parse(row.scopes) as GrantedScope[],
    createdAt: toIso(row.created_at),
    expiresAt: toIsoOrNull(row.expires_at),
    lastUsedAt: toIsoOrNull(row.last_used_at),
  };
}

export function looksLikeApiKey(token: string): boolean {
  return token.startsWith(API_KEY_PREFIX);
}

/** API keys: shown once at creation, stored as a SHA-256 hash, revocable. */
export class ApiKeyService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    /** Told when a key is revoked, so live connections made with it close too. */
    private readonly notify: (message: ControlMessage) => void = () => undefined,
  ) {}

  async create(
    userId: string,
    input: { name: string; scopes?: GrantedScope[] | undefined; expiresAt?: string | undefined },
  ): Promise<ApiKey & { key: string }> {
    const now = this.clock.now();
    const expiresAt = input.expiresAt === undefined ? null : Date.parse(input.expiresAt);
    if (expiresAt !== null && expiresAt <= now) throw errors.badRequest('expiresAt must be in the future.');
    const key = `${API_KEY_PREFIX}${randomToken(30)}`;
    const row: Selectable<ApiKeysTable> = {
      id: newId(),
      user_id: userId,
      name: input.name,
      prefix: key.slice(0, SHOWN_PREFIX_LENGTH),
      key_hash: sha256(key),
      scopes: JSON.stringify(dedupe(input.scopes ?? ['*'])),
      created_at: now,
      expires_at: expiresAt,
      last_used_at: null,
      revoked_at: null,
    };
    await this.db.insertInto('api_keys').values(row).execute();
    return { ...toApiKey(row), key };
  }

  async list(userId: string): Promise<ApiKey[]> {
    const rows = await this.db
      .selectFrom('api_keys')
      .selectAll()
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .orderBy('id', 'desc')
      .execute();
    return rows.map(toApiKey);
  }

  async revoke(userId: string, id: string): Promise<void> {
    const result = await this.db
      .updateTable('api_keys')
      .set({ revoked_at: this.clock.now() })
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) throw errors.apiKeyNotFound();
    this.notify({ type: 'apiKey.revoked', apiKeyId: id });
  }

  /** The key's owner and scopes, or an invalidApiKey error when it is unknown, expired or revoked. */
  async verify(key: string): Promise<VerifiedApiKey> {
    const row = await this.db.selectFrom('api_keys').selectAll().where('key_hash', '=', sha256(key)).executeTakeFirst();
    const now = this.clock.now();
    if (!row || row.revoked_at !== null) throw errors.invalidApiKey();
    if (row.expires_at !== null && row.expires_at <= now) throw errors.invalidApiKey('The API key has expired.');
    if (row.last_used_at === null || now - row.last_used_at >= LAST_USED_RESOLUTION_MS) {
      await this.db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', row.id).execute();
    }
    return { id: row.id, userId: row.user_id, scopes: JSON.parse(row.scopes) as GrantedScope[], expiresAt: row.expires_at === null ? null : Number(row.expires_at) };
  }
}

function dedupe<T>(values: T[]): T[] {
  return [...new Set(values)];
}
