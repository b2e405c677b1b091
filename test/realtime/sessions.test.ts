import { afterEach, describe, expect, it, vi } from 'vitest';
import { LocalEventBus } from '../../src/events/index.js';
import { errors } from '../../src/utils/errors.js';
import { ResumableBus } from '../helpers/bus.js';
import { LiveSessions } from '../../src/realtime/sessions.js';
import type { Principal } from '../../src/access/principal.js';

function principal(overrides: Partial<Principal> = {}): Principal {
  return { userId: 'u1', email: 'a@example.com', role: 'user', via: 'token', scopes: null, apiKeyId: null, expiresAt: null, ...overrides };
}

describe('LiveSessions', () => {
  afterEach(() => vi.useRealTimers());

  it('ends the connections of a revoked key or a user whose sessions ended, and only those', () => {
    const bus = new LocalEventBus();
    const sessions = new LiveSessions(bus, async () => undefined);
    const keyEnd = vi.fn();
    const otherKeyEnd = vi.fn();
    const loginEnd = vi.fn();
    const otherUserEnd = vi.fn();
    sessions.add(principal({ via: 'apiKey', apiKeyId: 'k1', scopes: ['jobs:read'] }), null, keyEnd);
    sessions.add(principal({ via: 'apiKey', apiKeyId: 'k2', scopes: ['jobs:read'] }), null, otherKeyEnd);
    sessions.add(principal(), null, loginEnd);
    sessions.add(principal({ userId: 'u2' }), null, otherUserEnd);

    bus.publishControl({ type: 'apiKey.revoked', apiKeyId: 'k1' });
    expect(keyEnd).toHaveBeenCalledWith({ code: 'JOBLINE_API_KEY_INVALID', message: 'The API key was revoked.' });
    expect(otherKeyEnd).not.toHaveBeenCalled();
    expect(loginEnd).not.toHaveBeenCalled();
    expect(sessions.size).toBe(3);

    bus.publishControl({ type: 'user.sessionsRevoked', userId: 'u1' });
    expect(loginEnd).toHaveBeenCalledWith(expect.objectContaining({ code: 'JOBLINE_TOKEN_INVALID' }));
    // The user's remaining API key connection goes too: the user's sessions ended.
    expect(otherKeyEnd).toHaveBeenCalledTimes(1);
    expect(otherUserEnd).not.toHaveBeenCalled();
    expect(keyEnd).toHaveBeenCalledTimes(1);
    expect(sessions.size).toBe(1);
  });

  it('ends a connection when its credentials expire, once, and not after it was released', () => {
    vi.useFakeTimers();
    const bus = new LocalEventBus();
    const sessions = new LiveSessions(bus, async () => undefined);
    const tokenEnd = vi.fn();
    const keyEnd = vi.fn();
    const releasedEnd = vi.fn();
    sessions.add(principal({ expiresAt: Date.now() + 1000 }), null, tokenEnd);
    sessions.add(principal({ via: 'apiKey', apiKeyId: 'k1', scopes: ['jobs:read'], expiresAt: Date.now() + 2000 }), null, keyEnd);
    const release = sessions.add(principal({ userId: 'u3', expiresAt: Date.now() + 1000 }), null, releasedEnd);
    release();

    vi.advanceTimersByTime(1000);
    expect(tokenEnd).toHaveBeenCalledWith(expect.objectContaining({ code: 'JOBLINE_TOKEN_EXPIRED' }));
    expect(keyEnd).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1000);
    expect(keyEnd).toHaveBeenCalledWith({ code: 'JOBLINE_API_KEY_INVALID', message: 'The API key expired.' });
    // Revoked after it expired: already ended, not told twice.
    bus.publishControl({ type: 'user.sessionsRevoked', userId: 'u1' });
    expect(tokenEnd).toHaveBeenCalledTimes(1);
    expect(keyEnd).toHaveBeenCalledTimes(1);
    expect(releasedEnd).not.toHaveBeenCalled();
    expect(sessions.size).toBe(0);
  });

  it('stops listening and cancels its timers when closed', () => {
    vi.useFakeTimers();
    const bus = new LocalEventBus();
    const sessions = new LiveSessions(bus, async () => undefined);
    const end = vi.fn();
    sessions.add(principal({ expiresAt: Date.now() + 1000 }), null, end);
    sessions.close();
    bus.publishControl({ type: 'user.sessionsRevoked', userId: 'u1' });
    vi.advanceTimersByTime(5000);
    expect(end).not.toHaveBeenCalled();
    expect(sessions.size).toBe(0);
  });

  it('checks every credential again when the bus resumes (revocations may have been lost), ending only those refused', async () => {
    const bus = new ResumableBus();
    const refused = new Set(['revoked-key', 'old-token']);
    const checked: string[] = [];
    const sessions = new LiveSessions(bus, async (credential) => {
      checked.push(credential);
      if (credential === 'store-down') throw new Error('connection refused');
      if (refused.has(credential)) throw credential === 'old-token' ? errors.invalidToken('The access token has been revoked.') : errors.invalidApiKey();
    });
    const ends = new Map<string, ReturnType<typeof vi.fn>>();
    for (const credential of ['revoked-key', 'old-token', 'good-key', 'store-down']) {
      const end = vi.fn();
      ends.set(credential, end);
      sessions.add(principal({ userId: credential }), credential, end);
    }
    const withoutCredential = vi.fn();
    sessions.add(principal(), null, withoutCredential);
    bus.resume();
    await vi.waitFor(() => expect(checked).toHaveLength(4));
    await vi.waitFor(() => expect(sessions.size).toBe(3));
    expect(ends.get('revoked-key')).toHaveBeenCalledWith(expect.objectContaining({ code: 'JOBLINE_API_KEY_INVALID' }));
    expect(ends.get('old-token')).toHaveBeenCalledWith({ code: 'JOBLINE_TOKEN_INVALID', message: 'The access token has been revoked.' });
    expect(ends.get('good-key')).not.toHaveBeenCalled();
    // The store being unreachable proves nothing against the credentials.
    expect(ends.get('store-down')).not.toHaveBeenCalled();
    expect(withoutCredential).not.toHaveBeenCalled();
  });
});
