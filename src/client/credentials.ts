import type { components } from './generated/api.js';
import { errorFromResponse, JoblineError, unreachable } from './errors.js';

/**
 * What the client authenticates with: an API key, or a login session whose access token is
 * renewed with its refresh token shortly before it expires (or when the server says it has).
 * Refresh tokens work once, so concurrent calls share one refresh.
 */

export type Session = components['schemas']['Session'];

/** A login session as a caller keeps it between runs. */
export interface StoredSession {
  accessToken: string;
  refreshToken: string;
  /** When the access token expires (epoch ms); unknown means "refresh when the server says so". */
  expiresAt?: number;
}

/** Renew this long before the access token's expiry, so a call in flight does not meet it. */
const REFRESH_MARGIN_MS = 30_000;

export class Credentials {
  private session: StoredSession | null;
  private refreshing: Promise<void> | null = null;

  constructor(
    private readonly options: {
      apiKey?: string | undefined;
      session?: StoredSession | undefined;
      baseUrl: string;
      fetch: (request: Request) => Promise<Response>;
      onSession?: ((session: Session) => void) | undefined;
      now: () => number;
    },
  ) {
    this.session = options.session ? { ...options.session } : null;
  }

  get canRefresh(): boolean {
    return this.options.apiKey === undefined && this.session !== null;
  }

  /** The Authorization header value for the next request, refreshing a session about to expire. */
  async authorization(): Promise<string | null> {
    if (this.options.apiKey !== undefined) return `Bearer ${this.options.apiKey}`;
    if (!this.session) return null;
    const { expiresAt } = this.session;
    if (expiresAt !== undefined && expiresAt - this.options.now() < REFRESH_MARGIN_MS) await this.refresh();
    return this.session ? `Bearer ${this.session.accessToken}` : null;
  }

  /** Takes a new session (after login or refresh) and tells the caller, who may store it. */
  accept(session: Session): void {
    this.session = { accessToken: session.accessToken, refreshToken: session.refreshToken, expiresAt: this.options.now() + session.expiresIn * 1000 };
    this.options.onSession?.(session);
  }

  forget(): void {
    this.session = null;
  }

  get refreshToken(): string | null {
    return this.session?.refreshToken ?? null;
  }

  /** Trades the refresh token for a new session; concurrent callers wait on the same trade. */
  refresh(): Promise<void> {
    this.refreshing ??= this.trade().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async trade(): Promise<void> {
    const refreshToken = this.session?.refreshToken;
    if (!refreshToken) throw new JoblineError({ status: 401, code: 'JOBLINE_UNAUTHENTICATED', detail: 'Not logged in: log in or use an API key.' });
    const url = `${this.options.baseUrl}/v1/auth/refresh`;
    let response: Response;
    try {
      response = await this.options.fetch(
        new Request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken }) }),
      );
    } catch (error) {
      throw unreachable(url, error);
    }
    if (!response.ok) {
      const error = await errorFromResponse(response);
      // A refresh token the server refuses will never work again.
      if (response.status === 401) this.session = null;
      throw error;
    }
    this.accept((await response.json()) as Session);
  }
}
