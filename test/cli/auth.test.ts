import { statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, CLI_TEST_TIMEOUT_MS, closedPort, expectOneLineError, jobline, readProfiles, startHarness, type Harness } from './harness.js';

describe('jobline login, profiles and keys', () => {
  let harness: Harness;
  // The shortest lifetime the server allows, so a later command meets an expired access token.
  beforeAll(async () => {
    harness = await startHarness({ JOBLINE_ACCESS_TOKEN_TTL: '10000' });
  }, CLI_TEST_TIMEOUT_MS);
  afterAll(async () => harness?.stop());

  it('stores an API key login in a 0600 profile that later commands use', async () => {
    const configHome = harness.configHome();
    const key = await harness.adminKey();
    const login = await jobline(['login', '--url', harness.server.baseUrl, '--api-key', key], { configHome });
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain(`logged in to ${harness.server.baseUrl} as ${ADMIN.email}`);

    const file = path.join(configHome, 'jobline', 'config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(readProfiles(configHome)['default']).toMatchObject({ url: harness.server.baseUrl, apiKey: key });

    // No --url, no key: both come from the profile.
    const whoami = await jobline(['whoami', '--json'], { configHome });
    expect(whoami.code, whoami.stderr).toBe(0);
    expect(JSON.parse(whoami.stdout)).toMatchObject({ email: ADMIN.email, role: 'admin' });

    // JOBLINE_API_KEY wins over the profile's key.
    expectOneLineError(await jobline(['whoami'], { configHome, JOBLINE_API_KEY: 'jl_not-a-real-key' }), 'run jobline login');

    // A second profile beside the first, picked with --profile or JOBLINE_PROFILE.
    const staging = await jobline(['login', '--profile', 'staging', '--url', harness.server.baseUrl, '--api-key', key], { configHome });
    expect(staging.code, staging.stderr).toBe(0);
    expect(Object.keys(readProfiles(configHome)).sort()).toEqual(['default', 'staging']);
    expect((await jobline(['whoami'], { configHome, JOBLINE_PROFILE: 'staging' })).stdout).toContain(ADMIN.email);
    expectOneLineError(await jobline(['whoami', '--profile', 'nobody'], { configHome }), 'not logged in to http://localhost:3000');

    const logout = await jobline(['logout'], { configHome });
    expect(logout.code, logout.stderr).toBe(0);
    expect(readProfiles(configHome)['default']).toBeUndefined();
    expectOneLineError(await jobline(['jobs', 'list'], { configHome }), /not logged in to http:\/\/localhost:3000; run jobline login/);
  }, CLI_TEST_TIMEOUT_MS);

  it('logs in with email and password, and refreshes the expired access token on a later command', async () => {
    const configHome = harness.configHome();
    const login = await jobline(['login', '--url', harness.server.baseUrl, '--email', ADMIN.email, '--password', ADMIN.password], { configHome });
    expect(login.code, login.stderr).toBe(0);
    const first = readProfiles(configHome)['default']?.session;
    expect(first?.refreshToken).toMatch(/^jlr_/);
    expect(readProfiles(configHome)['default']?.apiKey).toBeUndefined();

    // The access token lives 10 s: wait it out, so the next command must use the refresh token.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, (first?.expiresAt ?? 0) - Date.now()) + 500));
    // Three commands at once: one renews the login, the others wait and use what it stored (a
    // refresh token shown twice would end the login).
    const together = await Promise.all([1, 2, 3].map(() => jobline(['whoami'], { configHome })));
    for (const whoami of together) {
      expect(whoami.code, whoami.stderr).toBe(0);
      expect(whoami.stdout).toContain(ADMIN.email);
    }
    const second = readProfiles(configHome)['default']?.session;
    expect(second?.refreshToken).toMatch(/^jlr_/);
    expect(second?.refreshToken).not.toBe(first?.refreshToken);
    expect(second?.accessToken).not.toBe(first?.accessToken);

    // The rotated token was stored correctly: a spent one would revoke the login.
    const again = await jobline(['jobs', 'list', '--json'], { configHome });
    expect(again.code, again.stderr).toBe(0);
    expect(Array.isArray(JSON.parse(again.stdout))).toBe(true);

    // Logging out ends the login on the server: its refresh token no longer works.
    const lastToken = readProfiles(configHome)['default']?.session?.refreshToken;
    expect((await jobline(['logout'], { configHome })).code).toBe(0);
    const refreshed = await fetch(`${harness.server.baseUrl}/v1/auth/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refreshToken: lastToken }),
    });
    expect(refreshed.status).toBe(401);
  }, CLI_TEST_TIMEOUT_MS);

  it('a wrong password is one line, and stores nothing', async () => {
    const configHome = harness.configHome();
    const run = await jobline(['login', '--url', harness.server.baseUrl, '--email', ADMIN.email, '--password', 'wrong-password-1'], { configHome });
    expectOneLineError(run, 'JOBLINE_INVALID_CREDENTIALS');
    // Off a terminal there is nobody to ask for a password.
    expectOneLineError(await jobline(['login', '--url', harness.server.baseUrl, '--email', ADMIN.email], { configHome }), 'pass --password');
    expect(() => readProfiles(configHome)).toThrow();
  }, CLI_TEST_TIMEOUT_MS);

  it('creates a key that works, lists it, and revokes it', async () => {
    const configHome = harness.configHome();
    const env = { configHome, JOBLINE_URL: harness.server.baseUrl, JOBLINE_API_KEY: await harness.adminKey() };
    const created = await jobline(['keys', 'create', 'ci-reader', '--scope', 'jobs:read', '--scope', 'account:read', '--json'], env);
    expect(created.code, created.stderr).toBe(0);
    const key = JSON.parse(created.stdout) as { id: string; key: string; scopes: string[] };
    expect(key.scopes).toEqual(['jobs:read', 'account:read']);

    const asNewKey = { ...env, JOBLINE_API_KEY: key.key };
    expect((await jobline(['whoami'], asNewKey)).code).toBe(0);
    // The scope is enforced: this key may not pause queues.
    expectOneLineError(await jobline(['queues', 'pause', 'default'], asNewKey), /not allowed: .*\(JOBLINE_/);

    const listed = await jobline(['keys', 'list'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('ci-reader');
    expect(listed.stdout).not.toContain(key.key);

    const revoked = await jobline(['keys', 'revoke', key.id], env);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(`revoked key ${key.id}`);
    expectOneLineError(await jobline(['whoami'], asNewKey), 'not logged in or the key is invalid');
    expectOneLineError(await jobline(['keys', 'create', 'x', '--scope', 'everything'], env), "--scope 'everything' is not a scope");
  }, CLI_TEST_TIMEOUT_MS);

  it('bad input: one line on stderr, a non-zero exit, no stack trace', async () => {
    const configHome = harness.configHome();
    const env = { configHome, JOBLINE_URL: harness.server.baseUrl, JOBLINE_API_KEY: await harness.adminKey() };
    const port = await closedPort();
    const runs = await Promise.all([
      jobline(['frobnicate'], env),
      jobline(['jobs', 'submit', 'echo', '--frob'], env),
      jobline(['jobs', 'frob'], env),
      jobline(['jobs', 'submit', 'echo', '--payload', '{not json'], env),
      jobline(['jobs', 'submit', 'echo', '--payload', '@/no/such/payload.json'], env),
      jobline(['jobs', 'list'], { ...env, JOBLINE_URL: `http://127.0.0.1:${port}` }),
      jobline(['jobs', 'list'], { ...env, JOBLINE_API_KEY: 'jl_invalid' }),
      jobline(['jobs', 'get', '01a242e9-6d42-72ba-ad2e-637122dfa279'], env),
      jobline(['jobs', 'submit', 'echo', '--priority', 'high'], env),
      jobline(['jobs', 'submit', 'no-such-type'], env),
    ]);
    const [unknownCommand, unknownFlag, unknownSubcommand, badJson, missingFile, unreachable, unauthenticated, notFound, badNumber, unknownType] = runs;
    expectOneLineError(unknownCommand!, "unknown command 'frobnicate'; run jobline --help");
    expectOneLineError(unknownFlag!, "unknown option '--frob'; see jobline jobs submit --help");
    expectOneLineError(unknownSubcommand!, "unknown command 'frob'");
    expectOneLineError(badJson!, '--payload is not valid JSON');
    expectOneLineError(missingFile!, 'cannot read --payload file /no/such/payload.json (no such file)');
    expectOneLineError(unreachable!, `cannot reach http://127.0.0.1:${port} (connection refused); is the server running? set --url or JOBLINE_URL`);
    expectOneLineError(unauthenticated!, /not logged in or the key is invalid \(JOBLINE_[A-Z_]+\); run jobline login/);
    expectOneLineError(notFound!, '(JOBLINE_JOB_NOT_FOUND)');
    expectOneLineError(badNumber!, "--priority must be a whole number from -1000 to 1000, not 'high'");
    expectOneLineError(unknownType!, 'JOBLINE_UNKNOWN_JOB_TYPE');
    for (const run of runs) expect(run.stdout).toBe('');

    // --debug adds the stack.
    const debug = await jobline(['--debug', 'jobs', 'list'], { ...env, JOBLINE_URL: `http://127.0.0.1:${port}` });
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/\n\s+at /);
  }, CLI_TEST_TIMEOUT_MS);

  it('colours tables only when asked to off a terminal, and never with NO_COLOR', async () => {
    const configHome = harness.configHome();
    const env = { configHome, JOBLINE_URL: harness.server.baseUrl, JOBLINE_API_KEY: await harness.adminKey() };
    const [plain, forced, vetoed] = await Promise.all([
      jobline(['keys', 'list'], env),
      jobline(['keys', 'list'], { ...env, FORCE_COLOR: '1' }),
      jobline(['keys', 'list'], { ...env, FORCE_COLOR: '1', NO_COLOR: '1' }),
    ]);
    expect(plain.stdout).toContain('cli-tests');
    expect(plain.stdout).not.toContain('\u001b[');
    expect(forced.stdout).toContain('\u001b[');
    // (Node itself warns on stderr that NO_COLOR and FORCE_COLOR are both set.)
    expect(vetoed.stdout).not.toContain('\u001b[');
  }, CLI_TEST_TIMEOUT_MS);
});
