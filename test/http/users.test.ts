import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabases } from '../helpers/postgres.js';
import { ADMIN_EMAIL, problemOf, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const databases = await testDatabases();

describe.each(databases)('users and /v1/me on %s', (database) => {
  let server: TestRuntime;
  let admin: string;
  let user: { accessToken: string; userId: string };

  beforeAll(async () => {
    server = await startTestRuntime({ database });
    admin = (await server.login()).accessToken;
    await server.createUser('user@example.com', 'user-password-1');
    user = await server.login('user@example.com', 'user-password-1');
  });
  afterAll(async () => server.close());

  it('GET /v1/me returns the caller', async () => {
    const response = await server.request({ method: 'GET', url: '/v1/me', token: user.accessToken });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ id: user.userId, email: 'user@example.com', role: 'user', createdAt: expect.any(String) });
  });

  it('PATCH /v1/me changes the password only with the current one, and ends other sessions', async () => {
    await server.createUser('changer@example.com', 'first-password-1');
    const session = await server.login('changer@example.com', 'first-password-1');
    const wrong = await server.request({
      method: 'PATCH',
      url: '/v1/me',
      token: session.accessToken,
      body: { currentPassword: 'not-it-at-all', password: 'second-password-1' },
    });
    expect(wrong.statusCode).toBe(403);
    expect(problemOf(wrong).code).toBe('JOBLINE_WRONG_PASSWORD');

    const changed = await server.request({
      method: 'PATCH',
      url: '/v1/me',
      token: session.accessToken,
      body: { currentPassword: 'first-password-1', password: 'second-password-1' },
    });
    expect(changed.statusCode).toBe(200);
    expect((await server.request({ method: 'GET', url: '/v1/me', token: session.accessToken })).statusCode).toBe(401);
    await server.login('changer@example.com', 'second-password-1');
  });

  it('refuses an ordinary user on every admin route with 403', async () => {
    const calls = [
      { method: 'GET' as const, url: '/v1/users' },
      { method: 'POST' as const, url: '/v1/users', body: { email: 'x@example.com', password: 'password-123' } },
      { method: 'GET' as const, url: `/v1/users/${user.userId}` },
      { method: 'PATCH' as const, url: `/v1/users/${user.userId}`, body: { role: 'admin' } },
      { method: 'DELETE' as const, url: `/v1/users/${user.userId}` },
    ];
    for (const call of calls) {
      const response = await server.request({ ...call, token: user.accessToken });
      expect(response.statusCode, `${call.method} ${call.url}`).toBe(403);
      expect(problemOf(response).code).toBe('JOBLINE_FORBIDDEN');
    }
    const self = await server.request({ method: 'GET', url: '/v1/me', token: user.accessToken });
    expect(self.json().role).toBe('user');
  });

  it('lets an admin create, read, update and delete users', async () => {
    const created = await server.request({
      method: 'POST',
      url: '/v1/users',
      token: admin,
      body: { email: 'Managed@Example.com', password: 'managed-password-1' },
    });
    expect(created.statusCode).toBe(201);
    const managed = created.json();
    expect(managed).toMatchObject({ email: 'managed@example.com', role: 'user' });

    const duplicate = await server.request({
      method: 'POST',
      url: '/v1/users',
      token: admin,
      body: { email: 'managed@example.com', password: 'managed-password-1' },
    });
    expect(duplicate.statusCode).toBe(409);

    const fetched = await server.request({ method: 'GET', url: `/v1/users/${managed.id}`, token: admin });
    expect(fetched.json()).toEqual(managed);

    const managedSession = await server.login('managed@example.com', 'managed-password-1');
    const promoted = await server.request({ method: 'PATCH', url: `/v1/users/${managed.id}`, token: admin, body: { role: 'admin' } });
    expect(promoted.statusCode).toBe(200);
    expect(promoted.json().role).toBe('admin');
    // A role change ends the sessions issued under the old role.
    expect((await server.request({ method: 'GET', url: '/v1/me', token: managedSession.accessToken })).statusCode).toBe(401);

    const empty = await server.request({ method: 'PATCH', url: `/v1/users/${managed.id}`, token: admin, body: {} });
    expect(empty.statusCode).toBe(400);
    const unknownField = await server.request({ method: 'PATCH', url: `/v1/users/${managed.id}`, token: admin, body: { admin: true } });
    expect(unknownField.statusCode).toBe(400);

    const deleted = await server.request({ method: 'DELETE', url: `/v1/users/${managed.id}`, token: admin });
    expect(deleted.statusCode).toBe(204);
    const gone = await server.request({ method: 'GET', url: `/v1/users/${managed.id}`, token: admin });
    expect(gone.statusCode).toBe(404);
    expect(problemOf(gone).code).toBe('JOBLINE_USER_NOT_FOUND');
    await expect(server.login('managed@example.com', 'managed-password-1')).rejects.toThrow(/401/);
  });

  it('answers 400 for an id that is not a UUID', async () => {
    const response = await server.request({ method: 'GET', url: '/v1/users/not-a-uuid', token: admin });
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).errors?.[0]?.path).toBe('params.id');
  });

  it('never removes or demotes the last admin', async () => {
    const adminId = (await server.request({ method: 'GET', url: '/v1/me', token: admin })).json().id;
    const demote = await server.request({ method: 'PATCH', url: `/v1/users/${adminId}`, token: admin, body: { role: 'user' } });
    expect(demote.statusCode).toBe(409);
    expect(problemOf(demote).code).toBe('JOBLINE_LAST_ADMIN');
    const remove = await server.request({ method: 'DELETE', url: `/v1/users/${adminId}`, token: admin });
    expect(remove.statusCode).toBe(409);
  });

  it('pages through users newest first with an opaque cursor', async () => {
    for (let i = 0; i < 5; i += 1) await server.createUser(`page${i}@example.com`, 'page-password-1');
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `limit=2&cursor=${encodeURIComponent(cursor)}` : 'limit=2';
      const response = await server.request({ method: 'GET', url: `/v1/users?${query}`, token: admin });
      expect(response.statusCode).toBe(200);
      const page = response.json();
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((item: { email: string }) => item.email));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen.slice(0, 5)).toEqual(['page4@example.com', 'page3@example.com', 'page2@example.com', 'page1@example.com', 'page0@example.com']);
    expect(seen).toContain(ADMIN_EMAIL);
    expect(new Set(seen).size).toBe(seen.length);

    const bad = await server.request({ method: 'GET', url: '/v1/users?cursor=garbage', token: admin });
    expect(bad.statusCode).toBe(400);
    expect(problemOf(bad).code).toBe('JOBLINE_INVALID_CURSOR');
    const tooMany = await server.request({ method: 'GET', url: '/v1/users?limit=1000', token: admin });
    expect(tooMany.statusCode).toBe(400);
  });
});
