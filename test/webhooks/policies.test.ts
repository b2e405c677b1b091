import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/utils/clock.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { startReceiver, until, webhookApi, type Receiver } from './helpers.js';

const DAY_MS = 86_400_000;

let receiver: Receiver;
beforeAll(async () => {
  receiver = await startReceiver();
});
afterAll(async () => receiver.close());

/** Without JOBLINE_OUTBOUND_ALLOW: a name that resolves to loopback is refused when the attempt connects. */
describe('SSRF guard at delivery time', () => {
  let server: TestRuntime;
  let token = '';

  beforeAll(async () => {
    server = await startTestRuntime({ env: { JOBLINE_WEBHOOK_RETRY_DELAYS: '50' } });
    token = (await server.login()).accessToken;
  });
  afterAll(async () => server.close());

  it('records a failed attempt with JOBLINE_SSRF_BLOCKED and never connects', async () => {
    const api = webhookApi(server, () => token);
    const connectionsBefore = receiver.server.connections;
    // A name passes the check at creation; only its resolved address is refused.
    const endpoint = await api.createEndpoint(`http://localhost:${receiver.server.port}/ssrf`);
    const test = await api.test(endpoint.id);
    const delivery = await until(() => api.delivery(endpoint.id, test.id), (view) => view.status === 'failed', 8000, 'the delivery to fail');
    expect(delivery.attempts).toHaveLength(2);
    for (const attempt of delivery.attempts) expect(attempt).toMatchObject({ statusCode: null, error: { code: 'JOBLINE_SSRF_BLOCKED' } });
    expect(delivery.lastError?.code).toBe('JOBLINE_SSRF_BLOCKED');
    expect(delivery.lastError?.message).toMatch(/localhost resolves to a refused address/);
    expect(receiver.server.connections).toBe(connectionsBefore);
    expect(receiver.hits('/ssrf')).toEqual([]);
  });
});

/** A manual clock moves days ahead; real time only waits for the sender to notice. */
describe('disabling an endpoint that keeps failing', () => {
  const clock = new ManualClock(Date.parse('2026-03-01T00:00:00Z'));
  let server: TestRuntime;
  let token = '';
  let api: ReturnType<typeof webhookApi>;
  const relogin = async () => {
    token = (await server.login()).accessToken;
  };

  beforeAll(async () => {
    server = await startTestRuntime({ clock, env: { JOBLINE_OUTBOUND_ALLOW: '127.0.0.0/8', JOBLINE_WEBHOOK_RETRY_DELAYS: '100' } });
    api = webhookApi(server, () => token);
    await relogin();
  });
  afterAll(async () => server.close());

  const attempts = (endpointId: string, deliveryId: string, count: number) =>
    until(() => api.delivery(endpointId, deliveryId), (view) => view.attempts.length === count, 8000, `${count} attempts`);

  it('clears failingSince when a delivery succeeds again', async () => {
    receiver.plan('/recovers', (n) => ({ status: n === 1 ? 500 : 200 }));
    const endpoint = await api.createEndpoint(receiver.url('/recovers'));
    const test = await api.test(endpoint.id);
    await attempts(endpoint.id, test.id, 1);
    expect((await api.endpoint(endpoint.id)).failingSince).toBe(new Date(clock.now()).toISOString());
    clock.advance(150);
    await until(() => api.delivery(endpoint.id, test.id), (view) => view.status === 'succeeded');
    expect(await api.endpoint(endpoint.id)).toMatchObject({ enabled: true, failingSince: null });
  });

  it('disables the endpoint once every attempt has failed for JOBLINE_WEBHOOK_DISABLE_AFTER (5 days)', async () => {
    receiver.plan('/down', () => ({ status: 500 }));
    const endpoint = await api.createEndpoint(receiver.url('/down'));
    const firstFailure = new Date(clock.now()).toISOString();
    const first = await api.test(endpoint.id);
    await attempts(endpoint.id, first.id, 1);
    expect(await api.endpoint(endpoint.id)).toMatchObject({ enabled: true, failingSince: firstFailure });

    clock.advance(4 * DAY_MS);
    await relogin();
    await attempts(endpoint.id, first.id, 2);
    expect(await api.endpoint(endpoint.id)).toMatchObject({ enabled: true, failingSince: firstFailure, disabledReason: null });

    clock.advance(DAY_MS);
    await relogin();
    const second = await api.test(endpoint.id);
    await attempts(endpoint.id, second.id, 1);
    const disabled = await api.endpoint(endpoint.id);
    expect(disabled.enabled).toBe(false);
    expect(disabled.disabledReason).toBe(`Every delivery attempt has failed since ${firstFailure}.`);
    // Its pending retry waits while the endpoint is disabled.
    clock.advance(1000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await api.delivery(endpoint.id, second.id)).attempts).toHaveLength(1);

    receiver.plan('/down', () => ({ status: 200 }));
    expect(await api.patch(endpoint.id, { enabled: true })).toMatchObject({ enabled: true, disabledReason: null, failingSince: null });
    await until(() => api.delivery(endpoint.id, second.id), (view) => view.status === 'succeeded', 8000, 'the paused retry to go out');
  });
});
