import { afterEach, describe, expect, it, vi } from 'vitest';
import { LocalEventBus } from '../../src/events/index.js';
import { LiveSessions } from '../../src/events/sessions.js';
import type { Principal } from '../../src/services/authService.js';

function principal(overrides: Partial<Principal> = {}): Principal {
  return { userId: 'u1', email: 'a@example.com', role: 'user', via: 'token', scopes: null, apiKeyId: null, expiresAt: null, ...overrides };
}

describe('LiveSessions', () => {
  afterEach(() => vi.useRealTimers());

  it('ends the connections of a revoked key or a user whose sessions ended, and only those', () => {
    const bus = new LocalEventBus();
    const sessions = new LiveSessions(bus);
    const keyEnd = vi.fn();
    const otherKeyEnd = vi.fn();
    const loginEnd = vi.fn();
    const otherUserEnd = vi.fn();
    sessions.add(principal({ via: 'apiKey', apiKeyId: 'k1', scopes: ['jobs:read'] }), keyEnd);
    sessions.add(principal({ via: 'apiKey', apiKeyId: 'k2', scopes: ['jobs:read'] }), otherKeyEnd);
    sessions.add(principal(), loginEnd);
    sessions.add(principal({ userId: 'u2' }), otherUserEnd);

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
    const sessions = new LiveSessions(bus);
    const tokenEnd = vi.fn();
    const keyEnd = vi.fn();
    const releasedEnd = vi.fn();
    sessions.add(principal({ expiresAt: Date.now() + 1000 }), tokenEnd);
    sessions.add(principal({ via: 'apiKey', apiKeyId: 'k1', scopes: ['jobs:read'], expiresAt: Date.now() + 2000 }), keyEnd);
    const release = sessions.add(principal({ userId: 'u3', expiresAt: Date.now() + 1000 }), releasedEnd);
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
    const sessions = new LiveSessions(bus);
    const end = vi.fn();
    sessions.add(principal({ expiresAt: Date.now() + 1000 }), end);
    sessions.close();
    bus.publishControl({ type: 'user.sessionsRevoked', userId: 'u1' });
    vi.advanceTimersByTime(5000);
    expect(end).not.toHaveBeenCalled();
    expect(sessions.size).toBe(0);
  });
});
