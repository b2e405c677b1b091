import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/schema.js';
import type { Clock } from '../utils/clock.js';
import { decoyPasswordHash, sha256, verifyPassword } from '../utils/crypto.js';
import { AppError, errors, toError } from '../utils/errors.js';
import { newId, randomToken } from '../utils/ids.js';
import type { Mailer } from '../utils/mailer.js';
import { looksLikeApiKey, type ApiKeyService } from './apiKeyService.js';
import type { LoginThrottle } from './loginThrottle.js';
import type { Principal } from '../access/principal.js';
import { normalizeEmail, toUser, type User, type UserService } from './userService.js';

export const JWT_ALGORITHM = 'HS256';
export const JWT_ISSUER = 'jobline';
export const JWT_AUDIENCE = 'jobline-api';
const RESET_TOKEN_TTL_MS = 30 * 60_000;
const REFRESH_TOKEN_PREFIX = 'jlr_';

export interface Session {
  accessToken: string;
  refreshToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  user: User;
}

export interface AuthSettings {
  jwtSecret: Uint8Array;
  accessTokenTtlMs: number;
  refreshTokenTtlMs: number;
  openRegistration: boolean;
  publicUrl: string | null;
}

export class AuthService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly users: UserService,
    private readonly apiKeys: ApiKeyService,
    private readonly throttle: LoginThrottle,
    private readonly mailer: Mailer,
    private readonly settings: AuthSettings,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Wrong password and unknown email give the same answer in about the same time. */
  async login(emailInput: string, password: string, ip: string): Promise<Session> {
    const email = normalizeEmail(emailInput);
    await this.throttle.assertAllowed(email, ip);
    const row = await this.users.findRowByEmail(email);
    const valid = await verifyPassword(row?.password_hash ?? (await decoyPasswordHash()), password);
    if (!row || !valid) {
      await this.throttle.recordFailure(email, ip);
      throw errors.invalidCredentials();
    }
    await this.throttle.recordSuccess(email, ip);
    return this.startSession(row.id, newId());
  }

  async register(email: string, password: string): Promise<User> {
    if (!this.settings.openRegistration) throw errors.registrationClosed();
    return this.users.create({ email, password, role: 'user' });
  }

  /**
   * Rotates a refresh token: the old one is spent and a new one of the same family returned.
   * Presenting a spent or revoked token again revokes the whole family (it was stolen or replayed).
   */
  async refresh(refreshToken: string): Promise<Session> {
    const row = await this.db
      .selectFrom('refresh_tokens')
      .selectAll()
      .where('token_hash', '=', sha256(refreshToken))
      .executeTakeFirst();
    const now = this.clock.now();
    if (!row) throw errors.refreshTokenInvalid();
    if (row.used_at !== null || row.revoked_at !== null) {
      await this.revokeFamily(row.family_id);
      this.logger.warn({ userId: row.user_id, familyId: row.family_id }, 'refresh token reused; login revoked');
      throw errors.refreshTokenReused();
    }
    if (row.expires_at <= now) throw errors.refreshTokenInvalid();
    // Spend it atomically: of two concurrent refreshes with one token, exactly one wins.
    const spent = await this.db
      .updateTable('refresh_tokens')
      .set({ used_at: now })
      .where('id', '=', row.id)
      .where('used_at', 'is', null)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(spent.numUpdatedRows) !== 1) {
      await this.revokeFamily(row.family_id);
      throw errors.refreshTokenReused();
    }
    return this.startSession(row.user_id, row.family_id);
  }

  /** Ends the login the refresh token belongs to. Unknown tokens are ignored: logging out twice is fine. */
  async logout(refreshToken: string): Promise<void> {
    const row = await this.db
      .selectFrom('refresh_tokens')
      .select('family_id')
      .where('token_hash', '=', sha256(refreshToken))
      .executeTakeFirst();
    if (row) await this.revokeFamily(row.family_id);
  }

  /**
   * Starts a password reset. Answers the same whether or not the email exists: the caller
   * replies at once and this runs afterwards, so neither the answer nor its timing tells.
   */
  async forgotPassword(emailInput: string): Promise<void> {
    const row = await this.users.findRowByEmail(emailInput);
    if (!row) return;
    const token = randomToken(32);
    const now = this.clock.now();
    await this.db
      .insertInto('password_resets')
      .values({
        id: newId(),
        user_id: row.id,
        token_hash: sha256(token),
        created_at: now,
        expires_at: now + RESET_TOKEN_TTL_MS,
        used_at: null,
      })
      .execute();
    const link = this.settings.publicUrl ? `${this.settings.publicUrl}/reset-password?token=${token}` : null;
    await this.mailer.send({
      to: row.email,
      subject: 'Reset your Jobline password',
      text: [
        'Someone asked to reset the password of your Jobline account.',
        link ? `Open ${link} to choose a new one,` : 'To choose a new one,',
        `or send POST /v1/auth/password/reset with {"token": "${token}", "password": "…"}.`,
        'The token works once, within 30 minutes. If you did not ask, ignore this message.',
      ].join('\n'),
    });
  }

  /** Runs forgotPassword without waiting, logging (never surfacing) a failure. */
  forgotPasswordInBackground(email: string): void {
    setImmediate(() => {
      this.forgotPassword(email).catch((error: unknown) =>
        this.logger.error({ err: toError(error) }, 'password reset mail failed'),
      );
    });
  }

  async resetPassword(token: string, password: string): Promise<void> {
    const now = this.clock.now();
    const row = await this.db
      .selectFrom('password_resets')
      .selectAll()
      .where('token_hash', '=', sha256(token))
      .executeTakeFirst();
    if (!row || row.used_at !== null || row.expires_at <= now) throw errors.resetTokenInvalid();
    const spent = await this.db
      .updateTable('password_resets')
      .set({ used_at: now })
      .where('id', '=', row.id)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    if (Number(spent.numUpdatedRows) !== 1) throw errors.resetTokenInvalid();
    // Also ends every session: whoever knew the old password is logged out.
    await this.users.update(row.user_id, { password });
  }

  /** Resolves `Authorization: Bearer …` (an access token or an API key) to a principal. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!match?.[1]) throw errors.unauthenticated();
    return this.authenticateToken(match[1]);
  }

  async authenticateToken(token: string): Promise<Principal> {
    if (looksLikeApiKey(token)) {
      const key = await this.apiKeys.verify(token);
      const user = await this.users.findRow(key.userId);
      if (!user) throw errors.invalidApiKey();
      return { userId: user.id, email: user.email, role: user.role, via: 'apiKey', scopes: key.scopes, apiKeyId: key.id, expiresAt: key.expiresAt };
    }
    const claims = await this.verifyAccessToken(token);
    const user = await this.users.findRow(claims.sub);
    // A deleted user, or one whose password or role changed since the token was issued.
    if (!user || user.token_version !== claims.ver) throw errors.invalidToken('The access token has been revoked.');
    return { userId: user.id, email: user.email, role: user.role, via: 'token', scopes: null, apiKeyId: null, expiresAt: claims.exp * 1000 };
  }

  async verifyAccessToken(token: string): Promise<{ sub: string; ver: number; exp: number }> {
    try {
      const { payload } = await jwtVerify(token, this.settings.jwtSecret, {
        algorithms: [JWT_ALGORITHM],
        issuer: JWT_ISSUER,
        audience: JWT_AUDIENCE,
        currentDate: new Date(this.clock.now()),
        requiredClaims: ['sub', 'exp', 'iat'],
      });
      if (typeof payload.sub !== 'string' || typeof payload['ver'] !== 'number' || typeof payload.exp !== 'number') {
        throw errors.invalidToken();
      }
      return { sub: payload.sub, ver: payload['ver'], exp: payload.exp };
    } catch (error) {
      if (error instanceof AppError) throw error;
      if (error instanceof joseErrors.JWTExpired) throw errors.tokenExpired();
      throw errors.invalidToken();
    }
  }

  private async startSession(userId: string, familyId: string): Promise<Session> {
    const user = await this.users.findRow(userId);
    if (!user) throw errors.refreshTokenInvalid();
    const now = this.clock.now();
    const refreshToken = `${REFRESH_TOKEN_PREFIX}${randomToken(32)}`;
    await this.db
      .insertInto('refresh_tokens')
      .values({
        id: newId(),
        user_id: userId,
        family_id: familyId,
        token_hash: sha256(refreshToken),
        created_at: now,
        expires_at: now + this.settings.refreshTokenTtlMs,
        used_at: null,
        revoked_at: null,
      })
      .execute();
    const expiresIn = Math.floor(this.settings.accessTokenTtlMs / 1000);
    const accessToken = await new SignJWT({ ver: user.token_version })
      .setProtectedHeader({ alg: JWT_ALGORITHM, typ: 'JWT' })
      .setSubject(user.id)
      .setIssuer(JWT_ISSUER)
      .setAudience(JWT_AUDIENCE)
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.floor(now / 1000) + expiresIn)
      .setJti(newId())
      .sign(this.settings.jwtSecret);
    return { accessToken, refreshToken, tokenType: 'Bearer', expiresIn, user: toUser(user) };
  }

  private async revokeFamily(familyId: string): Promise<void> {
    await this.db
      .updateTable('refresh_tokens')
      .set({ revoked_at: this.clock.now() })
      .where('family_id', '=', familyId)
      .where('revoked_at', 'is', null)
      .execute();
  }
}
