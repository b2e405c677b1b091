import type http from 'node:http';
import { startLoopbackServer, type LoopbackServer, type ReceivedRequest } from '../helpers/loopbackServer.js';
import type { TestRuntime } from '../helpers/runtime.js';

/** What a receiver path answers; `n` counts the requests to that path, from 1. */
/** `status: 0` never answers (a hung receiver). */
export type Reply = { status: number; headers?: Record<string, string>; body?: string };
export type Plan = (n: number) => Reply;

export interface Receiver {
  server: LoopbackServer;
  url(path: string): string;
  /** Requests to a path, in arrival order, with the time each arrived. */
  hits(path: string): (ReceivedRequest & { at: number })[];
  plan(path: string, plan: Plan): void;
  close(): Promise<void>;
}

/** A webhook receiver on 127.0.0.1 whose answers each test scripts per path (200 by default). */
export async function startReceiver(): Promise<Receiver> {
  const plans = new Map<string, Plan>();
  const arrivals: (ReceivedRequest & { at: number })[] = [];
  const server = await startLoopbackServer((request, response: http.ServerResponse) => {
    arrivals.push({ ...request, at: Date.now() });
    const count = arrivals.filter((arrival) => arrival.path === request.path).length;
    const plan: Plan = plans.get(request.path) ?? (() => ({ status: 200 }));
    const reply = plan(count);
    if (reply.status !== 0) response.writeHead(reply.status, reply.headers).end(reply.body ?? '');
  });
  return {
    server,
    url: (path) => server.url(path),
    hits: (path) => arrivals.filter((arrival) => arrival.path === path),
    plan: (path, plan) => void plans.set(path, plan),
    close: () => server.close(),
  };
}

/** Polls `read` until `done` holds; the deadline is generous, as only a broken run should reach it. */
export async function until<T>(read: () => Promise<T> | T, done: (value: T) => boolean, timeoutMs = 15_000, what = 'a condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export interface DeliveryView {
  id: string;
  eventType: string;
  jobId: string | null;
  eventSeq: number | null;
  status: 'pending' | 'succeeded' | 'failed';
  lastStatusCode: number | null;
  lastError: { code: string; message: string } | null;
  payload: { type: string; timestamp: string; data: Record<string, unknown> };
  attempts: { attemptedAt: string; statusCode: number | null; durationMs: number; error: { code: string } | null; responseExcerpt: string | null }[];
}

/** API calls the webhook tests share. */
export function webhookApi(server: TestRuntime, token: () => string) {
  const call = async (method: 'GET' | 'POST' | 'PATCH', url: string, body?: unknown) => {
    const response = await server.request({ method, url, token: token(), body });
    if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
    return response.json<Record<string, unknown>>();
  };
  return {
    createEndpoint: async (url: string, events: string[] = ['*'], extra: Record<string, unknown> = {}) =>
      (await call('POST', '/v1/webhooks', { url, events, ...extra })) as { id: string; secret: string },
    endpoint: async (id: string) => (await call('GET', `/v1/webhooks/${id}`)) as { enabled: boolean; disabledReason: string | null; failingSince: string | null },
    patch: (id: string, body: Record<string, unknown>) => call('PATCH', `/v1/webhooks/${id}`, body),
    test: async (id: string) => (await call('POST', `/v1/webhooks/${id}/test`)) as { id: string },
    deliveries: async (id: string) => ((await call('GET', `/v1/webhooks/${id}/deliveries?limit=100`)) as { items: DeliveryView[] }).items,
    delivery: async (id: string, deliveryId: string) => (await call('GET', `/v1/webhooks/${id}/deliveries/${deliveryId}`)) as unknown as DeliveryView,
    redeliver: (id: string, deliveryId: string) => call('POST', `/v1/webhooks/${id}/deliveries/${deliveryId}/redeliver`),
    submit: async (type: string, payload: unknown, extra: Record<string, unknown> = {}) =>
      (await call('POST', '/v1/jobs', { type, payload, ...extra })) as { id: string },
  };
}
