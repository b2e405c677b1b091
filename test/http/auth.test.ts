import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/utils/clock.js';
import { testDatabases } from '../helpers/postgres.js';
import { ADMIN_EMAIL, ADMIN_PASSWORD, problemOf, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const databases = await testDatabases();

describe.each(databases)('accounts on %s', (database) => {
  let server: TestRuntime;
  const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));

  beforeAll(async () => {
    server = await startTestRuntime({ clock, database });
  });
  afterAll(async () => server.close());

  describe('login', () => {
    it('returns tokens and the user for the right password', async () => {
      const response = await server.request({ method: 'POST', url: '/v1/auth/login', body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
      expect(response.statusCode).toBe(200);
      const body = response.json();
      expect(body).toMatchObject({ tokenType: 'Bearer', expiresIn: 900, user: { email: ADMIN_EMAIL, role: 'admin' } });
      expect(body.accessToken.split('.')).toHaveLength(3);
      expect(body.refreshToken).toMatch(/^jlr_/);
    });

    it('accepts the email in another case', async () => {
      const response = await server.request({
        method: 'POST',
        url: '/v1/auth/login',
        body: { email: ADMIN_EMAIL.toUpperCase(), password: ADMIN_PASSWORD },
      });
      expect(response.statusCode).toBe(200);
    });

    it('answers a wrong password and an unknown email alike', async () => {
      const wrong = await server.request({
        method: 'POST',
        url: '/v1/auth/login',
        body: { email: ADMIN_EMAIL, password: 'not-the-password' },
        remoteAddress: '10.1.0.1',
      });
      const unknown = await server.request({
        method: 'POST',
        url: '/v1/auth/login',
        body: { email: 'nobody@example.com', password: 'not-the-password' },
        remoteAddress: '10.1.0.2',
      });
      expect(wrong.statusCode).toBe(401);
      expect(unknown.statusCode).toBe(401);
      const { requestId: _a, instance: _b, ...wrongProblem } = wrong.json();
      const { requestId: _c, instance: _d, ...unknownProblem } = unknown.json();
      expect(wrongProblem).toEqual(unknownProblem);
      expect(problemOf(wrong).code).toBe('JOBLINE_INVALID_CREDENTIALS');
    });

    it('rejects malformed and incomplete bodies with problem+json', async () => {
      const malformed = await server.request({
        method: 'POST',
        url: '/v1/auth/login',
        body: '{"email": "a@b.c", "password": ',
        headers: { 'content-type': 'application/json' },
      });
      expect(malformed.statusCode).toBe(400);
      expect(problemOf(malformed).code).toBe('JOBLINE_MALFORMED_JSON');

      const missing = await server.request({ method: 'POST', url: '/v1/auth/login', body: { email: ADMIN_EMAIL } });
      expect(missing.statusCode).toBe(400);
      const problem = problemOf(missing);
      expect(problem.code).toBe('JOBLINE_VALIDATION_FAILED');
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'body.password' })]);
    });

    it('refuses an oversized body with 413', async () => {
      const response = await server.request({
        method: 'POST',
        url: '/v1/auth/login',
        body: { email: ADMIN_EMAIL, password: 'x'.repeat(2 * 1024 * 1024) },
      });
      expect(response.statusCode).toBe(413);
      expect(problemOf(response).code).toBe('JOBLINE_PAYLOAD_TOO_LARGE');
    });

    it('throttles repeated failures per account and address with 429 and Retry-After, without locking out other addresses', async () => {
      const email = 'throttled@example.com';
      await server.createUser(email, 'right-password-1');
      const attempt = (password: string, remoteAddress: string) =>
        server.request({ method: 'POST', url: '/v1/auth/login', body: { email, password }, remoteAddress });
      for (let i = 0; i < 5; i += 1) expect((await attempt('wrong-password', '10.9.9.9')).statusCode).toBe(401);

      const blocked = await attempt('right-password-1', '10.9.9.9');
      expect(blocked.statusCode).toBe(429);
      expect(problemOf(blocked).code).toBe('JOBLINE_RATE_LIMITED');
      expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
      expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(15 * 60);

      // The real owner, from another address, still gets in.
      expect((await attempt('right-password-1', '10.8.8.8')).statusCode).toBe(200);
      // And the attacker's address gets in again once the window has passed.
      clock.advance(15 * 60_000 + 1000);
      expect((await attempt('right-password-1', '10.9.9.9')).statusCode).toBe(200);
    });
  });

  describe('refresh tokens', () => {
    it('rotate: each refresh returns a new token and spends the old one', async () => {
      const first = await server.login();
      const refreshed = await server.request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken } });
      expect(refreshed.statusCode).toBe(200);
      const second = refreshed.json();
      expect(second.refreshToken).not.toBe(first.refreshToken);
      const me = await server.request({ method: 'GET', url: '/v1/me', token: second.accessToken });
      expect(me.statusCode).toBe(200);
    });

    it('detect reuse: a spent token fails and revokes every token of that login', async () => {
      const login = await server.login();
      const rotated = (await server.request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: login.refreshToken } })).json();
      const replay = await server.request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: login.refreshToken } });
      expect(replay.statusCode).toBe(401);
      expect(problemOf(replay).code).toBe('JOBLINE_REFRESH_TOKEN_REUSED');
      // The legitimate holder's newer token is revoked too.
      const newer = await server.request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: rotated.refreshToken } });
      expect(newer.statusCode).toBe(401);
      // Another login of the same user is untouched.
      const other = await server.login();
      expect((await server.request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: other.refreshToken } })).statusCode).toBe(200);
    });

    it('refuse unknown and expired tokens', async () => {
      const unknown = await server.request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: 'jlr_nonsense' } });
      expect(unknown.statusCode).toBe(401);
      expect(problemOf(unknown).code).toBe('JOBLINE_REFRESH_TOKEN_INVALID');
      const login = await server.login();
      clock.advance(31 * 86_400_000);
      const expired = await server.request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: login.refreshToken } });
      expect(expired.statusCode).toBe(401);
      expect(problemOf(expired).code).toBe('JOBLINE_REFRESH_TOKEN_INVALID');
    });

    it('logout ends the login', async () => {
      const login = await server.login();
      const out = await server.request({ method: 'POST', url: '/v1/auth/logout', body: { refreshToken: login.refreshToken } });
      expect(out.statusCode).toBe(204);
      const after = await server.request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: login.refreshToken } });
      expect(after.statusCode).toBe(401);
    });
  });

  describe('access tokens', () => {
    const secret = () => server.runtime.services.auth['settings'].jwtSecret;

    async function expectRejected(token: string, code: string) {
      const response = await server.request({ method: 'GET', url: '/v1/me', token });
      expect(response.statusCode).toBe(401);
      expect(problemOf(response).code).toBe(code);
    }

    it('rejects a missing or malformed Authorization header', async () => {
      const none = await server.request({ method: 'GET', url: '/v1/me' });
      expect(none.statusCode).toBe(401);
      expect(problemOf(none).code).toBe('JOBLINE_UNAUTHENTICATED');
      const basic = await server.request({ method: 'GET', url: '/v1/me', headers: { authorization: 'Basic YTpi' } });
      expect(problemOf(basic).code).toBe('JOBLINE_UNAUTHENTICATED');
    });

    it('rejects alg:none', async () => {
      const { userId } = await server.login();
      const unsigned = new UnsecuredJWT({ ver: 0 })
        .setSubject(userId)
        .setIssuer('jobline')
        .setAudience('jobline-api')
        .setIssuedAt()
        .setExpirationTime('10m')
        .encode();
      await expectRejected(unsigned, 'JOBLINE_TOKEN_INVALID');
    });

    it('rejects a tampered token', async () => {
      const { accessToken } = await server.login();
      const [header, payload, signature] = accessToken.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
      claims.sub = '00000000-0000-7000-8000-000000000000';
      const forged = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
      await expectRejected(forged, 'JOBLINE_TOKEN_INVALID');
    });

    it('rejects an expired token', async () => {
      const { accessToken } = await server.login();
      clock.advance(16 * 60_000);
      await expectRejected(accessToken, 'JOBLINE_TOKEN_EXPIRED');
    });

    it('rejects the wrong audience, issuer, algorithm or key', async () => {
      const { userId } = await server.login();
      const now = Math.floor(clock.now() / 1000);
      const build = (audience: string, issuer: string) =>
        new SignJWT({ ver: 0 }).setSubject(userId).setAudience(audience).setIssuer(issuer).setIssuedAt(now).setExpirationTime(now + 600);
      await expectRejected(await build('other-api', 'jobline').setProtectedHeader({ alg: 'HS256' }).sign(secret()), 'JOBLINE_TOKEN_INVALID');
      await expectRejected(await build('jobline-api', 'someone').setProtectedHeader({ alg: 'HS256' }).sign(secret()), 'JOBLINE_TOKEN_INVALID');
      await expectRejected(await build('jobline-api', 'jobline').setProtectedHeader({ alg: 'HS512' }).sign(secret()), 'JOBLINE_TOKEN_INVALID');
      const otherKey = new TextEncoder().encode('a-completely-different-secret-of-enough-length');
      await expectRejected(await build('jobline-api', 'jobline').setProtectedHeader({ alg: 'HS256' }).sign(otherKey), 'JOBLINE_TOKEN_INVALID');
      // The control: the same construction with the right parameters is accepted.
      const good = await build('jobline-api', 'jobline').setProtectedHeader({ alg: 'HS256' }).sign(secret());
      expect((await server.request({ method: 'GET', url: '/v1/me', token: good })).statusCode).toBe(200);
    });
  });

  describe('registration', () => {
    it('is closed by default', async () => {
      const response = await server.request({ method: 'POST', url: '/v1/auth/register', body: { email: 'new@example.com', password: 'password-123' } });
      expect(response.statusCode).toBe(403);
      expect(problemOf(response).code).toBe('JOBLINE_REGISTRATION_CLOSED');
    });
  });

  describe('password reset', () => {
    function resetTokenFor(email: string): string | undefined {
      const mail = server.logs
        .map((line) => line['mail'] as { to: string; text: string } | undefined)
        .filter((entry) => entry?.to === email)
        .at(-1);
      return mail ? /"token": "([^"]+)"/.exec(mail.text)?.[1] : undefined;
    }

    /** The mail is sent after the request is answered: poll for it, with a deadline a loaded machine cannot reach. */
    async function waitForToken(email: string): Promise<string> {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const token = resetTokenFor(email);
        if (token) return token;
        if (Date.now() > deadline) throw new Error(`no reset mail for ${email}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }

    it('answers 202 with the same body whether or not the email exists, and mails only real accounts', async () => {
      const email = 'forgetful@example.com';
      await server.createUser(email, 'old-password-1');
      const known = await server.request({ method: 'POST', url: '/v1/auth/password/forgot', body: { email } });
      const unknown = await server.request({ method: 'POST', url: '/v1/auth/password/forgot', body: { email: 'ghost@example.com' } });
      expect(known.statusCode).toBe(202);
      expect(unknown.statusCode).toBe(202);
      expect(known.body).toBe(unknown.body);
      await waitForToken(email);
      expect(resetTokenFor('ghost@example.com')).toBeUndefined();
    });

    it('sets a new password with the token, once, and ends old sessions', async () => {
      const email = 'resetter@example.com';
      await server.createUser(email, 'old-password-1');
      const session = await server.login(email, 'old-password-1');
      await server.request({ method: 'POST', url: '/v1/auth/password/forgot', body: { email } });
      const token = await waitForToken(email);

      const reset = await server.request({ method: 'POST', url: '/v1/auth/password/reset', body: { token, password: 'new-password-1' } });
      expect(reset.statusCode).toBe(204);
      const again = await server.request({ method: 'POST', url: '/v1/auth/password/reset', body: { token, password: 'other-password-1' } });
      expect(again.statusCode).toBe(400);
      expect(problemOf(again).code).toBe('JOBLINE_RESET_TOKEN_INVALID');

      expect((await server.request({ method: 'GET', url: '/v1/me', token: session.accessToken })).statusCode).toBe(401);
      const refresh = await server.request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
      expect(refresh.statusCode).toBe(401);
      await expect(server.login(email, 'old-password-1')).rejects.toThrow(/401/);
      await server.login(email, 'new-password-1');
    });

    it('refuses a token older than 30 minutes', async () => {
      const email = 'slow@example.com';
      await server.createUser(email, 'old-password-1');
      await server.request({ method: 'POST', url: '/v1/auth/password/forgot', body: { email } });
      const token = await waitForToken(email);
      clock.advance(31 * 60_000);
      const reset = await server.request({ method: 'POST', url: '/v1/auth/password/reset', body: { token, password: 'new-password-1' } });
      expect(reset.statusCode).toBe(400);
    });
  });

  it('never writes passwords or tokens to the log', async () => {
    const session = await server.login();
    await server.request({ method: 'GET', url: '/v1/me', token: session.accessToken });
    const text = server.logText();
    expect(text).not.toContain(ADMIN_PASSWORD);
    expect(text).not.toContain(session.accessToken);
    expect(text).not.toContain(session.refreshToken);
  });
});

describe('open registration', () => {
  let server: TestRuntime;
  beforeAll(async () => {
    server = await startTestRuntime({ env: { JOBLINE_OPEN_REGISTRATION: 'true' } });
  });
  afterAll(async () => server.close());

  it('creates an ordinary user, refuses a taken email and a short password', async () => {
    const created = await server.request({ method: 'POST', url: '/v1/auth/register', body: { email: 'Fresh@Example.com', password: 'password-123' } });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ email: 'fresh@example.com', role: 'user' });
    const taken = await server.request({ method: 'POST', url: '/v1/auth/register', body: { email: 'fresh@example.com', password: 'password-123' } });
    expect(taken.statusCode).toBe(409);
    expect(problemOf(taken).code).toBe('JOBLINE_EMAIL_TAKEN');
    const short = await server.request({ method: 'POST', url: '/v1/auth/register', body: { email: 'x@example.com', password: 'short' } });
    expect(short.statusCode).toBe(400);
    expect(problemOf(short).errors?.[0]?.path).toBe('body.password');
    await server.login('fresh@example.com', 'password-123');
  });
});
