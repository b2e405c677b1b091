import { createClient, type JoblineClient, type Session, type StoredSession } from '../client/index.js';
import type { ClientEnv } from '../config/env.js';
import { CliError } from './errors.js';
import { Output, type CliIo } from './output.js';
import { DEFAULT_PROFILE, ProfileStore, type Profile } from './profile.js';
import { withFileLock } from './sessionLock.js';

/** The options every command takes (commander's program-level options). */
export interface GlobalOptions {
  url?: string;
  apiKey?: string;
  profile?: string;
  json?: boolean;
  debug?: boolean;
}

export const DEFAULT_URL = 'http://localhost:3000';

/**
 * What a command runs with: its streams, its environment, the global options, the stored
 * profile, and a client made from them. Precedence for the server and the credentials:
 * flags, then JOBLINE_URL / JOBLINE_API_KEY, then the profile.
 */
export class CliContext {
  readonly store: ProfileStore;
  /** Set by a command whose outcome is not plain success (a failed or cancelled job). */
  exitCode = 0;
  /** The server in use, for error messages; null until a command picks one. */
  url: string | null = null;

  constructor(
    readonly io: CliIo,
    readonly env: ClientEnv,
    private readonly readGlobals: () => GlobalOptions,
  ) {
    this.store = new ProfileStore(env.configDir);
  }

  get globals(): GlobalOptions {
    return this.readGlobals();
  }

  get profileName(): string {
    return this.globals.profile ?? this.env.profile ?? DEFAULT_PROFILE;
  }

  get output(): Output {
    return new Output(this.io, this.env, this.globals.json === true);
  }

  profile(): Profile | null {
    return this.store.get(this.profileName);
  }

  /** The server to talk to: --url, then JOBLINE_URL, then the profile's, then localhost:3000. */
  resolveUrl(): string {
    const url = normalizeUrl(this.globals.url ?? this.env.url ?? this.profile()?.url ?? DEFAULT_URL);
    this.url = url;
    return url;
  }

  /** A client for the server in use, with the credentials that apply to it. */
  async client(): Promise<JoblineClient> {
    const url = this.resolveUrl();
    const profile = this.profile();
    // A profile's secrets go only to the server they were made for, never to a --url elsewhere.
    const stored = profile && normalizeUrl(profile.url) === url ? profile : null;
    const apiKey = this.globals.apiKey ?? this.env.apiKey ?? stored?.apiKey;
    if (apiKey !== undefined) return this.makeClient(url, { apiKey });
    if (stored?.session) {
      // Fresh for RENEW_MARGIN_MS at least; without expiresAt the client renews only on a 401 (a
      // command outliving the token), never eagerly outside the lock.
      const { expiresAt: _fresh, ...session } = await this.freshSession(url, stored.session);
      return this.makeClient(url, { session, onSession: (renewed) => this.keepSession(renewed) });
    }
    throw new CliError(`not logged in to ${url}`, 'run jobline login, or set JOBLINE_API_KEY');
  }

  makeClient(url: string, credentials: { apiKey?: string; session?: StoredSession; onSession?: (session: Session) => void }): JoblineClient {
    this.url = url;
    return createClient({ baseUrl: url, userAgent: 'jobline-cli', ...credentials });
  }

  /**
   * The stored session, renewed first when its access token is (about to be) expired. The
   * renewal holds a lock: of several commands started together, one trades the refresh token
   * and the others read the new one it stored, instead of showing the server a spent token.
   */
  private async freshSession(url: string, session: StoredSession): Promise<StoredSession> {
    if (!expiresSoon(session)) return session;
    return withFileLock(`${this.store.file}.lock`, async () => {
      const current = this.profile()?.session ?? session;
      if (!expiresSoon(current)) return current;
      // Marked expired, so the client's first call renews it (and keepSession stores the result).
      await this.makeClient(url, { session: { ...current, expiresAt: 0 }, onSession: (renewed) => this.keepSession(renewed) }).me();
      return this.profile()?.session ?? current;
    });
  }

  /** Stores a refreshed session: its refresh token replaces the spent one. */
  keepSession(session: Session): void {
    this.store.update(this.profileName, (profile) => ({ ...profile, session: sessionToStore(session) }));
  }
}

/** Renewed by the CLI before a command when less than this is left (more than the client's own margin). */
const RENEW_MARGIN_MS = 45_000;

function expiresSoon(session: StoredSession): boolean {
  return session.expiresAt === undefined || session.expiresAt - Date.now() < RENEW_MARGIN_MS;
}

export function sessionToStore(session: Session): StoredSession {
  return { accessToken: session.accessToken, refreshToken: session.refreshToken, expiresAt: Date.now() + session.expiresIn * 1000 };
}

export function normalizeUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(`'${text}' is not a URL`, 'pass the server as --url http://host:3000');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`'${text}' is not an http(s) URL`, 'pass the server as --url http://host:3000');
  return url.href.replace(/\/+$/, '');
}
