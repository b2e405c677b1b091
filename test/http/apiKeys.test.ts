import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/utils/clock.js';
import { testDatabases } from '../helpers/postgres.js';
import { problemOf, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const databases = await testDatabases();

describe.each(databases)('API keys on %s', (database) => {
  let server: TestRuntime;
  let token: string;
  const clock = new ManualClock(Date.parse('2026-03-01T00:00:00Z'));

  beforeAll(async () => {
    server = await startTestRuntime({ database, clock });
    await server.createUser('keys@example.com', 'keys-password-1');
    token = (await server.login('keys@example.com', 'keys-password-1')).accessToken;
  });
  afterAll(async () => server.close());

  const createKey = async (body: Record<string, unknown>) => {
    const response = await server.request({ method: 'POST', url: '/v1/api-keys', token, body });
    expect(response.statusCode, response.body).toBe(201);
    return response.json<{ id: string; key: string; prefix: string; scopes: string[] }>();
  };

  it('shows the key once, stores only a hash, and authenticates with it', async () => {
    const created = await createKey({ name: 'ci' });
    expect(created.key).toMatch(/^jl_[A-Za-z0-9_-]{40}$/);
    expect(created.key.startsWith(created.prefix)).toBe(true);
    expect(created.scopes).toEqual(['*']);

    const listed = await server.request({ method: 'GET', url: '/v1/api-keys', token });
    expect(listed.json().items).toEqual([expect.objectContaining({ id: created.id, name: 'ci', prefix: created.prefix })]);
    expect(listed.body).not.toContain(created.key);
    const stored = await server.runtime.database.db.selectFrom('api_keys').selectAll().where('id', '=', created.id).executeTakeFirstOrThrow();
    expect(JSON.stringify(stored)).not.toContain(created.key);

    const me = await server.request({ method: 'GET', url: '/v1/me', token: created.key });
    expect(me.statusCode).toBe(200);
    expect(me.json().email).toBe('keys@example.com');
  });

  it('records when a key was last used', async () => {
    const created = await createKey({ name: 'usage' });
    const before = (await server.request({ method: 'GET', url: '/v1/api-keys', token })).json().items.find((k: { id: string }) => k.id === created.id);
    expect(before.lastUsedAt).toBeNull();
    await server.request({ method: 'GET', url: '/v1/me', token: created.key });
    const after = (await server.request({ method: 'GET', url: '/v1/api-keys', token })).json().items.find((k: { id: string }) => k.id === created.id);
    expect(after.lastUsedAt).toBe(new Date(clock.now()).toISOString());
  });

  it('limits a key to its scopes', async () => {
    const readOnly = await createKey({ name: 'read-only', scopes: ['account:read'] });
    expect((await server.request({ method: 'GET', url: '/v1/me', token: readOnly.key })).statusCode).toBe(200);
    const write = await server.request({ method: 'POST', url: '/v1/api-keys', token: readOnly.key, body: { name: 'escalate' } });
    expect(write.statusCode).toBe(403);
    expect(problemOf(write).code).toBe('JOBLINE_INSUFFICIENT_SCOPE');
    const badScope = await server.request({ method: 'POST', url: '/v1/api-keys', token, body: { name: 'x', scopes: ['root'] } });
    expect(badScope.statusCode).toBe(400);
  });

  it('refuses a key of an ordinary user on admin routes even with the admin scope', async () => {
    const key = await createKey({ name: 'wishful', scopes: ['admin'] });
    const response = await server.request({ method: 'GET', url: '/v1/users', token: key.key });
    expect(response.statusCode).toBe(403);
  });

  it('refuses a revoked key with 401', async () => {
    const created = await createKey({ name: 'to-revoke' });
    const revoked = await server.request({ method: 'DELETE', url: `/v1/api-keys/${created.id}`, token });
    expect(revoked.statusCode).toBe(204);
    const response = await server.request({ method: 'GET', url: '/v1/me', token: created.key });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('JOBLINE_API_KEY_INVALID');
    const listed = (await server.request({ method: 'GET', url: '/v1/api-keys', token })).json().items;
    expect(listed.map((k: { id: string }) => k.id)).not.toContain(created.id);
    const twice = await server.request({ method: 'DELETE', url: `/v1/api-keys/${created.id}`, token });
    expect(twice.statusCode).toBe(404);
  });

  it('refuses an expired key, and an expiry in the past at creation', async () => {
    const created = await createKey({ name: 'short-lived', expiresAt: new Date(clock.now() + 60_000).toISOString() });
    expect((await server.request({ method: 'GET', url: '/v1/me', token: created.key })).statusCode).toBe(200);
    clock.advance(61_000);
    const expired = await server.request({ method: 'GET', url: '/v1/me', token: created.key });
    expect(expired.statusCode).toBe(401);
    expect(problemOf(expired).code).toBe('JOBLINE_API_KEY_INVALID');
    const past = await server.request({ method: 'POST', url: '/v1/api-keys', token, body: { name: 'past', expiresAt: '2000-01-01T00:00:00Z' } });
    expect(past.statusCode).toBe(400);
  });

  it("cannot revoke another user's key", async () => {
    const mine = await createKey({ name: 'mine' });
    await server.createUser('other@example.com', 'other-password-1');
    const other = await server.login('other@example.com', 'other-password-1');
    const response = await server.request({ method: 'DELETE', url: `/v1/api-keys/${mine.id}`, token: other.accessToken });
    expect(response.statusCode).toBe(404);
    expect((await server.request({ method: 'GET', url: '/v1/me', token: mine.key })).statusCode).toBe(200);
  });

  it('refuses an unknown key and stops working when its owner is deleted', async () => {
    const unknown = await server.request({ method: 'GET', url: '/v1/me', token: 'jl_thisisnotakeythisisnotakeythisisnotakey' });
    expect(unknown.statusCode).toBe(401);
    await server.createUser('leaver@example.com', 'leaver-password-1');
    const leaver = await server.login('leaver@example.com', 'leaver-password-1');
    const key = (await server.request({ method: 'POST', url: '/v1/api-keys', token: leaver.accessToken, body: { name: 'k' } })).json().key;
    const admin = (await server.login()).accessToken;
    await server.request({ method: 'DELETE', url: `/v1/users/${leaver.userId}`, token: admin });
    expect((await server.request({ method: 'GET', url: '/v1/me', token: key })).statusCode).toBe(401);
  });
});
