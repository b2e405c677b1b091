import type { Principal } from '../access/principal.js';
import { AppError } from '../utils/errors.js';
import { atTime, type TimerHandle } from '../utils/timers.js';
import type { ControlMessage, EventBus } from '../events/index.js';

/** Why a live connection ends: told to the client before it closes. */
export interface SessionEnd {
  code: string;
  message: string;
}

interface LiveSession {
  principal: Principal;
  end(reason: SessionEnd): void;
  expiry: TimerHandle | null;
  /** The token or API key it authenticated with, checked again after the bus lost messages. */
  credential: string | null;
}

/** Authenticates a credential again: rejects with an AppError when it no longer works. */
export type CredentialCheck = (credential: string) => Promise<unknown>;

/** Credentials checked at once after a lapse of the bus. */
const RECHECK_CONCURRENCY = 20;

/**
 * The live connections (Socket.IO sockets, SSE streams) of this process, each with the principal
 * it authenticated as, ended when those credentials stop working: the access token or API key
 * expires, the key is revoked, or the user's sessions are ended (password or role changed, user
 * deleted; told through the bus, so from any process). The bus may lose those notices while its
 * connection is down: when it resumes, every credential is checked again.
 */
export class LiveSessions {
  private readonly sessions = new Set<LiveSession>();
  private readonly stopControl: () => void;
  private readonly stopResume: () => void;

  constructor(
    bus: Pick<EventBus, 'onControl' | 'onResume'>,
    private readonly check: CredentialCheck,
  ) {
    this.stopControl = bus.onControl((message) => {
      for (const session of [...this.sessions]) {
        const reason = endedBy(session.principal, message);
        if (reason) this.finish(session, reason);
      }
    });
    this.stopResume = bus.onResume(() => void this.recheck());
  }

  /**
   * Watches a connection; `end` is called at most once. Returns what to call when it closes by
   * itself. `credential` is what it authenticated with.
   */
  add(principal: Principal, credential: string | null, end: (reason: SessionEnd) => void): () => void {
    const session: LiveSession = { principal, end, expiry: null, credential };
    this.sessions.add(session);
    if (principal.expiresAt !== null) {
      const reason: SessionEnd =
        principal.via === 'apiKey'
          ? { code: 'JOBLINE_API_KEY_INVALID', message: 'The API key expired.' }
          : { code: 'JOBLINE_TOKEN_EXPIRED', message: 'The access token expired; reconnect with a new one.' };
      session.expiry = atTime(principal.expiresAt, () => this.finish(session, reason));
    }
    return () => this.release(session);
  }

  /** How many connections are watched. */
  get size(): number {
    return this.sessions.size;
  }

  /** Checks every connection's credentials again, ending those that no longer work. */
  async recheck(): Promise<void> {
    const queue = [...this.sessions];
    const checkNext = async (): Promise<void> => {
      for (let session = queue.shift(); session; session = queue.shift()) {
        if (session.credential === null || !this.sessions.has(session)) continue;
        try {
          await this.check(session.credential);
        } catch (error) {
          // Refused: the credentials no longer work. Anything else (the store unreachable) proves nothing.
          if (error instanceof AppError) this.finish(session, { code: error.code, message: error.message });
        }
      }
    };
    await Promise.all(Array.from({ length: RECHECK_CONCURRENCY }, checkNext));
  }

  close(): void {
    this.stopControl();
    this.stopResume();
    for (const session of this.sessions) session.expiry?.cancel();
    this.sessions.clear();
  }

  private finish(session: LiveSession, reason: SessionEnd): void {
    if (!this.sessions.has(session)) return;
    this.release(session);
    session.end(reason);
  }

  private release(session: LiveSession): void {
    session.expiry?.cancel();
    this.sessions.delete(session);
  }
}

function endedBy(principal: Principal, message: ControlMessage): SessionEnd | null {
  if (message.type === 'apiKey.revoked' && principal.apiKeyId === message.apiKeyId) {
    return { code: 'JOBLINE_API_KEY_INVALID', message: 'The API key was revoked.' };
  }
  if (message.type === 'user.sessionsRevoked' && principal.userId === message.userId) {
    return { code: 'JOBLINE_TOKEN_INVALID', message: 'Your sessions were ended; log in again.' };
  }
  return null;
}
