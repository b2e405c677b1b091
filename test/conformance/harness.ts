import { NonRetriableError, RetryAfterError } from '../../src/engine/errors.js';
import type { NewJob } from '../../src/engine/types.js';
import type { HandlerRegistry } from '../../src/workers/registry.js';
import type { HandlerContext } from '../../src/workers/types.js';
import { createTestDatabase, postgresReachable } from '../helpers/postgres.js';
import { deleteKeys, distributedEnv, redisReachable, testPrefix } from '../helpers/redis.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * The conformance suite runs the same behaviour tests against every engine. A target starts a
 * server on that engine with the probe handlers below registered.
 */
export interface ConformanceTarget {
  name: string;
  start(options?: { env?: Record<string, string>; dataDir?: string; keepDataDir?: boolean }): Promise<TestRuntime>;
}

/** What the probe handlers saw, keyed by job id. Shared by every server of this test process. */
export const probe = {
  starts: new Map<string, number[]>(),
  aborted: new Set<string>(),
  order: [] as string[],
  reset(): void {
    this.starts.clear();
    this.aborted.clear();
    this.order.length = 0;
  },
};

function recordStart(ctx: HandlerContext): void {
  const list = probe.starts.get(ctx.job.id) ?? [];
  list.push(Date.now());
  probe.starts.set(ctx.job.id, list);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

type Payload = Record<string, number | string | boolean | undefined>;

export function registerProbeHandlers(registry: HandlerRegistry): void {
  const add = (type: string, run: (ctx: HandlerContext<Payload>) => Promise<unknown>, extra: { queue?: string; concurrency?: number } = {}) =>
    registry.register(
      { type, ...extra, run: (ctx: HandlerContext) => run({ ...ctx, payload: (ctx.payload ?? {}) as Payload }) },
      'conformance',
    );

  add('echo', async (ctx) => {
    recordStart(ctx as HandlerContext);
    return { echoed: ctx.payload ?? null };
  });
  // One at a time on its own queue, so the order of starts is the order of claims.
  add(
    'ordered',
    async (ctx) => {
      probe.order.push(String(ctx.payload['name']));
      return null;
    },
    { queue: 'ordered', concurrency: 1 },
  );
  // Fails until attempt `succeedOn` (never, when absent).
  add('flaky', async (ctx) => {
    recordStart(ctx as HandlerContext);
    const succeedOn = Number(ctx.payload['succeedOn'] ?? Number.POSITIVE_INFINITY);
    if (ctx.attempt < succeedOn) throw Object.assign(new Error(`attempt ${ctx.attempt} failed`), { code: 'FLAKY' });
    return { attempt: ctx.attempt };
  });
  add('fatal', async (ctx) => {
    recordStart(ctx as HandlerContext);
    throw new NonRetriableError('this cannot work', 'BAD_INPUT');
  });
  add('retry-after', async (ctx) => {
    recordStart(ctx as HandlerContext);
    if (ctx.attempt === 1) throw new RetryAfterError('come back later', Number(ctx.payload['ms']));
    return 'ok';
  });
  // Sleeps `ms` (`thenMs`, when given, on every start after the first); stops early when its
  // signal fires unless `ignoreSignal`.
  add(
    'sleepy',
    async (ctx) => {
      recordStart(ctx as HandlerContext);
      ctx.signal.addEventListener('abort', () => probe.aborted.add(ctx.job.id));
      const rerun = (probe.starts.get(ctx.job.id)?.length ?? 1) > 1 && ctx.payload['thenMs'] !== undefined;
      const ms = Number((rerun ? ctx.payload['thenMs'] : ctx.payload['ms']) ?? 1000);
      await sleep(ms, ctx.payload['ignoreSignal'] ? undefined : ctx.signal);
      return { slept: true };
    },
    { concurrency: 100 },
  );
  // Streams `count` deltas, pausing `everyMs` after each `batch` of them.
  add(
    'streamer',
    async (ctx) => {
      const count = Number(ctx.payload['count'] ?? 100);
      const batch = Number(ctx.payload['batch'] ?? 10);
      for (let i = 1; i <= count; i += 1) {
        ctx.delta(`token ${i}`);
        if (i % batch === 0) await sleep(Number(ctx.payload['everyMs'] ?? 5), ctx.signal);
      }
      return { tokens: count };
    },
    { concurrency: 100 },
  );
  add('chatty', async (ctx) => {
    const count = Number(ctx.payload['count'] ?? 10);
    for (let i = 1; i <= count; i += 1) {
      ctx.delta(`chunk ${i}`);
      if (i % 10 === 0) ctx.progress(Math.round((i / count) * 100));
    }
    ctx.log('done');
    return { chunks: count };
  });
}

const embedded: ConformanceTarget = {
  name: 'embedded',
  start: (options = {}) =>
    startTestRuntime({
      ...options,
      env: { JOBLINE_SWEEP_INTERVAL: '100', ...options.env },
      handlers: registerProbeHandlers,
    }),
};

/** Where a distributed test server keeps its state, by its data directory, so a restart finds it again. */
const distributedStores = new Map<string, { url: string; drop: () => Promise<void>; prefix: string }>();

/** Records in a fresh PostgreSQL database, dispatch on the machine's Redis under a fresh key prefix. */
const bullmq: ConformanceTarget = {
  name: 'bullmq',
  start: async (options = {}) => {
    const store = (options.dataDir ? distributedStores.get(options.dataDir) : undefined) ?? { ...(await createTestDatabase()), prefix: testPrefix() };
    const server = await startTestRuntime({
      ...options,
      postgresUrl: store.url,
      env: {
        JOBLINE_SWEEP_INTERVAL: '100',
        ...distributedEnv(store.prefix),
        ...options.env,
      },
      handlers: registerProbeHandlers,
    });
    distributedStores.set(server.dataDir, store);
    if (server.runtime.engine.name !== 'bullmq') throw new Error(`expected the BullMQ engine, got ${server.runtime.engine.name}`);
    return {
      ...server,
      close: async () => {
        await server.close();
        if (options.keepDataDir) return;
        distributedStores.delete(server.dataDir);
        await store.drop();
        await deleteKeys(store.prefix);
      },
    };
  },
};

/** Every engine: BullMQ when PostgreSQL and Redis are reachable (always under CI=true, where their absence fails). */
export const targets: ConformanceTarget[] = (await postgresReachable()) && (await redisReachable()) ? [embedded, bullmq] : [embedded];

export interface JobView {
  id: string;
  state: string;
  attemptsMade: number;
  result: unknown;
  error: { message: string; code?: string } | null;
  progress: unknown;
  createdAt: string;
  runAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** A logged-in client of a test server. */
export class Client {
  constructor(
    readonly server: TestRuntime,
    readonly token: string,
  ) {}

  async submit(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<JobView> {
    const response = await this.server.request({ method: 'POST', url: '/v1/jobs', token: this.token, body, headers });
    if (response.statusCode !== 201 && response.statusCode !== 200) throw new Error(`submit: ${response.statusCode} ${response.body}`);
    return response.json();
  }

  async get(id: string): Promise<JobView> {
    return (await this.server.request({ method: 'GET', url: `/v1/jobs/${id}`, token: this.token })).json();
  }

  async events(id: string): Promise<{ type: string; seq: number; data: Record<string, unknown> }[]> {
    return (await this.server.request({ method: 'GET', url: `/v1/jobs/${id}/events`, token: this.token })).json().items;
  }

  async post(url: string, body?: unknown) {
    return this.server.request({ method: 'POST', url, token: this.token, ...(body === undefined ? {} : { body }) });
  }

  /** Polls the job until `done` holds (default: it finished), or fails after `timeoutMs`. */
  async waitFor(id: string, done: (job: JobView) => boolean = isFinished, timeoutMs = 10_000): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.get(id);
      if (done(job)) return job;
      if (Date.now() > deadline) throw new Error(`job ${id} still ${job.state} after ${timeoutMs} ms: ${JSON.stringify(job)}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

export function isFinished(job: JobView): boolean {
  return job.state === 'completed' || job.state === 'failed' || job.state === 'cancelled';
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` until it holds; fails naming `what` after `timeoutMs`. The deadline is generous on
 * purpose: it only matters when something is broken, and a loaded CI machine must not trip it.
 */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleepMs(10);
  }
}

/** A job for the engine port directly: a type no handler serves, in a queue no consumer watches. */
export function newJob(ownerId: string, overrides: Partial<NewJob> = {}): NewJob {
  return {
    type: 'unhandled',
    queue: 'manual',
    payload: null,
    priority: 0,
    runAt: null,
    maxAttempts: 3,
    backoff: { type: 'fixed', delay: 0 },
    timeoutMs: null,
    ttlMs: null,
    idempotencyKey: null,
    singletonKey: null,
    tags: [],
    ownerId,
    scheduleId: null,
    ...overrides,
  };
}
