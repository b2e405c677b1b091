import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/utils/clock.js';
import { testDatabases } from '../helpers/postgres.js';
import { problemOf, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const databases = await testDatabases();

interface Endpoint {
  id: string;
  ownerId: string;
  url: string;
  events: string[];
  queue: string | null;
  description: string | null;
  enabled: boolean;
  disabledReason: string | null;
  secret?: string;
}

/**
 * The webhook API through inject(). The server runs in the `api` role, so nothing is ever sent:
 * these tests never reach beyond the process (the URLs below are never called).
 */
describe.each(databases)('webhooks API on %s', (database) => {
  let server: TestRuntime;
  let alice: string;
  let bob: string;
  let admin: string;
  const clock = new ManualClock(Date.parse('2026-03-01T00:00:00Z'));

  beforeAll(async () => {
    server = await startTestRuntime({ database, clock, env: { JOBLINE_ROLE: 'api' } });
    await server.createUser('alice@example.com', 'alice-password-1');
    await server.createUser('bob@example.com', 'bob-password-1');
    alice = (await server.login('alice@example.com', 'alice-password-1')).accessToken;
    bob = (await server.login('bob@example.com', 'bob-password-1')).accessToken;
    admin = (await server.login()).accessToken;
  });
  afterAll(async () => server.close());

  const create = async (body: Record<string, unknown>, token = alice) => {
    const response = await server.request({ method: 'POST', url: '/v1/webhooks', token, body });
    expect(response.statusCode, response.body).toBe(201);
    return response.json<Endpoint & { secret: string }>();
  };

  it('creates an endpoint with a whsec_ secret shown only at creation', async () => {
    const created = await create({ url: 'https://hooks.example.com/jobline', events: ['job.completed', 'job.failed'], queue: 'emails', description: 'CRM' });
    expect(created).toMatchObject({
      url: 'https://hooks.example.com/jobline',
      events: ['job.completed', 'job.failed'],
      queue: 'emails',
      description: 'CRM',
      enabled: true,
      disabledReason: null,
      createdAt: '2026-03-01T00:00:00.000Z',
    });
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);

    const fetched = await server.request({ method: 'GET', url: `/v1/webhooks/${created.id}`, token: alice });
    expect(fetched.statusCode).toBe(200);
    expect(fetched.json()).toMatchObject({ id: created.id, url: created.url });
    expect(fetched.body).not.toContain(created.secret);
    const listed = await server.request({ method: 'GET', url: '/v1/webhooks', token: alice });
    expect(listed.json().items.map((item: Endpoint) => item.id)).toContain(created.id);
    expect(listed.body).not.toContain(created.secret);
  });

  it.each([
    ['ftp://hooks.example.com/x', 'JOBLINE_SSRF_BLOCKED'],
    ['http://127.0.0.1:8080/hook', 'JOBLINE_SSRF_BLOCKED'],
    ['http://10.0.0.5/hook', 'JOBLINE_SSRF_BLOCKED'],
    ['http://[::1]/hook', 'JOBLINE_SSRF_BLOCKED'],
    ['http://[::ffff:169.254.169.254]/latest', 'JOBLINE_SSRF_BLOCKED'],
    ['http://169.254.169.254/latest/meta-data/', 'JOBLINE_SSRF_BLOCKED'],
    ['http://0x7f000001/', 'JOBLINE_SSRF_BLOCKED'],
    ['https://user:pass@hooks.example.com/', 'JOBLINE_SSRF_BLOCKED'],
    ['not a url', 'JOBLINE_BAD_REQUEST'],
  ])('refuses the URL %s with %s', async (url, code) => {
    const response = await server.request({ method: 'POST', url: '/v1/webhooks', token: alice, body: { url, events: ['*'] } });
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).code).toBe(code);
  });

  it('refuses unknown event types, an empty filter, a bad queue name and unknown fields', async () => {
    const url = 'https://hooks.example.com/x';
    for (const body of [
      { url, events: ['job.exploded'] },
      { url, events: [] },
      { url, events: ['*'], queue: 'no spaces allowed' },
      { url, events: ['*'], secret: 'whsec_mine' },
      { events: ['*'] },
    ]) {
      const response = await server.request({ method: 'POST', url: '/v1/webhooks', token: alice, body });
      expect(response.statusCode, JSON.stringify(body)).toBe(400);
      expect(problemOf(response).code).toBe('JOBLINE_VALIDATION_FAILED');
    }
  });

  it("hides another user's endpoint (404) but shows every endpoint to an admin", async () => {
    const endpoint = await create({ url: 'https://hooks.example.com/private', events: ['*'] });
    for (const [method, path, body] of [
      ['GET', `/v1/webhooks/${endpoint.id}`, undefined],
      ['PATCH', `/v1/webhooks/${endpoint.id}`, { enabled: false }],
      ['DELETE', `/v1/webhooks/${endpoint.id}`, undefined],
      ['POST', `/v1/webhooks/${endpoint.id}/test`, undefined],
      ['GET', `/v1/webhooks/${endpoint.id}/deliveries`, undefined],
    ] as const) {
      const response = await server.request({ method, url: path, token: bob, body });
      expect(response.statusCode, `${method} ${path}`).toBe(404);
      expect(problemOf(response).code).toBe('JOBLINE_WEBHOOK_NOT_FOUND');
    }
    const bobs = await server.request({ method: 'GET', url: '/v1/webhooks', token: bob });
    expect(bobs.json().items).toEqual([]);
    const asAdmin = await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}`, token: admin });
    expect(asAdmin.statusCode).toBe(200);
    const adminList = await server.request({ method: 'GET', url: '/v1/webhooks', token: admin });
    expect(adminList.json().items.map((item: Endpoint) => item.id)).toContain(endpoint.id);
  });

  it('needs webhooks:read to read and webhooks:write to change', async () => {
    const keyResponse = await server.request({ method: 'POST', url: '/v1/api-keys', token: alice, body: { name: 'read', scopes: ['webhooks:read'] } });
    const readKey = keyResponse.json<{ key: string }>().key;
    const jobsKey = (await server.request({ method: 'POST', url: '/v1/api-keys', token: alice, body: { name: 'jobs', scopes: ['jobs:read'] } })).json<{ key: string }>().key;
    expect((await server.request({ method: 'GET', url: '/v1/webhooks', token: readKey })).statusCode).toBe(200);
    const write = await server.request({ method: 'POST', url: '/v1/webhooks', token: readKey, body: { url: 'https://hooks.example.com/', events: ['*'] } });
    expect(write.statusCode).toBe(403);
    expect(problemOf(write)).toMatchObject({ code: 'JOBLINE_INSUFFICIENT_SCOPE' });
    const read = await server.request({ method: 'GET', url: '/v1/webhooks', token: jobsKey });
    expect(read.statusCode).toBe(403);
    expect((await server.request({ method: 'GET', url: '/v1/webhooks' })).statusCode).toBe(401);
  });

  it('updates, disables and re-enables an endpoint', async () => {
    const endpoint = await create({ url: 'https://hooks.example.com/a', events: ['*'], queue: 'q1', description: 'first' });
    const patched = await server.request({
      method: 'PATCH',
      url: `/v1/webhooks/${endpoint.id}`,
      token: alice,
      body: { url: 'https://hooks.example.com/b', events: ['job.delta', 'job.delta', 'job.completed'], queue: null, description: null },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json()).toMatchObject({ url: 'https://hooks.example.com/b', events: ['job.delta', 'job.completed'], queue: null, description: null });
    expect(patched.json().secret).toBeUndefined();
    const badUrl = await server.request({ method: 'PATCH', url: `/v1/webhooks/${endpoint.id}`, token: alice, body: { url: 'http://192.168.1.1/' } });
    expect(problemOf(badUrl).code).toBe('JOBLINE_SSRF_BLOCKED');

    const disabled = await server.request({ method: 'PATCH', url: `/v1/webhooks/${endpoint.id}`, token: alice, body: { enabled: false } });
    expect(disabled.json()).toMatchObject({ enabled: false, disabledReason: null });
    const test = await server.request({ method: 'POST', url: `/v1/webhooks/${endpoint.id}/test`, token: alice });
    expect(test.statusCode).toBe(409);
    expect(problemOf(test).code).toBe('JOBLINE_WEBHOOK_DISABLED');

    // An endpoint Jobline disabled shows why; enabling it clears the reason.
    await server.runtime.database.db
      .updateTable('webhook_endpoints')
      .set({ enabled: 0, disabled_reason: 'The endpoint answered 410 Gone.', failing_since: clock.now() })
      .where('id', '=', endpoint.id)
      .execute();
    expect((await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}`, token: alice })).json()).toMatchObject({
      enabled: false,
      disabledReason: 'The endpoint answered 410 Gone.',
      failingSince: '2026-03-01T00:00:00.000Z',
    });
    const enabled = await server.request({ method: 'PATCH', url: `/v1/webhooks/${endpoint.id}`, token: alice, body: { enabled: true } });
    expect(enabled.json()).toMatchObject({ enabled: true, disabledReason: null, failingSince: null });
  });

  it('rotates the secret and keeps the old one for 24 hours', async () => {
    const endpoint = await create({ url: 'https://hooks.example.com/rotate', events: ['*'] });
    const rotated = await server.request({ method: 'PATCH', url: `/v1/webhooks/${endpoint.id}`, token: alice, body: { rotateSecret: true } });
    expect(rotated.statusCode).toBe(200);
    const secret = rotated.json<{ secret: string }>().secret;
    expect(secret).toMatch(/^whsec_/);
    expect(secret).not.toBe(endpoint.secret);
    const row = await server.runtime.database.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', endpoint.id).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ secret, previous_secret: endpoint.secret, previous_secret_expires_at: clock.now() + 86_400_000 });
    const refused = await server.request({ method: 'PATCH', url: `/v1/webhooks/${endpoint.id}`, token: alice, body: { rotateSecret: false } });
    expect(refused.statusCode).toBe(400);
  });

  it('queues test deliveries, lists them newest first with a cursor, and redelivers', async () => {
    const endpoint = await create({ url: 'https://hooks.example.com/log', events: ['*'] });
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      clock.advance(1000);
      const test = await server.request({ method: 'POST', url: `/v1/webhooks/${endpoint.id}/test`, token: alice });
      expect(test.statusCode).toBe(202);
      expect(test.json()).toMatchObject({ eventType: 'webhook.test', jobId: null, status: 'pending', attempts: 0, nextAttemptAt: new Date(clock.now()).toISOString() });
      ids.push(test.json<{ id: string }>().id);
    }
    expect(ids[0]).toMatch(/^msg_[0-9a-f-]{36}$/);
    const first = await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}/deliveries?limit=2`, token: alice });
    const page = first.json<{ items: { id: string }[]; nextCursor: string }>();
    expect(page.items.map((item) => item.id)).toEqual([ids[2], ids[1]]);
    const second = await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}/deliveries?limit=2&cursor=${page.nextCursor}`, token: alice });
    expect(second.json()).toEqual({ items: [expect.objectContaining({ id: ids[0] })], nextCursor: null });
    const succeeded = await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}/deliveries?status=succeeded`, token: alice });
    expect(succeeded.json().items).toEqual([]);

    const detail = await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}/deliveries/${ids[0]}`, token: alice });
    expect(detail.statusCode).toBe(200);
    expect(detail.json()).toMatchObject({
      id: ids[0],
      attempts: [],
      payload: { type: 'webhook.test', data: { endpointId: endpoint.id } },
    });

    await server.runtime.database.db.updateTable('webhook_deliveries').set({ status: 'failed', series_attempts: 8 }).where('id', '=', ids[0]!).execute();
    clock.advance(5000);
    const redelivered = await server.request({ method: 'POST', url: `/v1/webhooks/${endpoint.id}/deliveries/${ids[0]}/redeliver`, token: alice });
    expect(redelivered.statusCode).toBe(202);
    expect(redelivered.json()).toMatchObject({ id: ids[0], status: 'pending', nextAttemptAt: new Date(clock.now()).toISOString() });

    const other = await create({ url: 'https://hooks.example.com/other', events: ['*'] });
    const wrongEndpoint = await server.request({ method: 'GET', url: `/v1/webhooks/${other.id}/deliveries/${ids[0]}`, token: alice });
    expect(problemOf(wrongEndpoint).code).toBe('JOBLINE_DELIVERY_NOT_FOUND');
    const malformed = await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}/deliveries/nope`, token: alice });
    expect(problemOf(malformed).code).toBe('JOBLINE_VALIDATION_FAILED');
    const badCursor = await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}/deliveries?cursor=abc`, token: alice });
    expect(problemOf(badCursor).code).toBe('JOBLINE_INVALID_CURSOR');
  });

  it('deletes an endpoint with its deliveries and their attempts', async () => {
    const endpoint = await create({ url: 'https://hooks.example.com/gone', events: ['*'] });
    const test = (await server.request({ method: 'POST', url: `/v1/webhooks/${endpoint.id}/test`, token: alice })).json<{ id: string }>();
    const { db } = server.runtime.database;
    await db
      .insertInto('webhook_attempts')
      .values({ id: crypto.randomUUID(), delivery_id: test.id, attempted_at: clock.now(), status_code: 500, duration_ms: 3, error: null, response_excerpt: null })
      .execute();
    const deleted = await server.request({ method: 'DELETE', url: `/v1/webhooks/${endpoint.id}`, token: alice });
    expect(deleted.statusCode).toBe(204);
    expect((await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}`, token: alice })).statusCode).toBe(404);
    expect(await db.selectFrom('webhook_deliveries').select('id').where('endpoint_id', '=', endpoint.id).execute()).toEqual([]);
    expect(await db.selectFrom('webhook_attempts').select('id').where('delivery_id', '=', test.id).execute()).toEqual([]);
  });

  it("deletes a user's endpoints with the user", async () => {
    const carolId = await server.createUser('carol@example.com', 'carol-password-1');
    const carol = (await server.login('carol@example.com', 'carol-password-1')).accessToken;
    const endpoint = await create({ url: 'https://hooks.example.com/carol', events: ['*'] }, carol);
    expect((await server.request({ method: 'DELETE', url: `/v1/users/${carolId}`, token: admin })).statusCode).toBe(204);
    const asAdmin = await server.request({ method: 'GET', url: `/v1/webhooks/${endpoint.id}`, token: admin });
    expect(asAdmin.statusCode).toBe(404);
  });

  it('documents the routes in the OpenAPI description', async () => {
    const spec = (await server.request({ method: 'GET', url: '/docs/openapi.json' })).json<{ paths: Record<string, unknown> }>();
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/v1/webhooks', '/v1/webhooks/{id}', '/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver']),
    );
  });
});
