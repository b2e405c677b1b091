import createFetchClient, { type Client } from 'openapi-fetch';
import { Credentials, type Session, type StoredSession } from './credentials.js';
import { errorFromBody } from './errors.js';
import { followJob, type FollowOptions, type JobEvent } from './follow.js';
import type { components, paths } from './generated/api.js';
import { Paged } from './paging.js';
import { createTransport, DEFAULT_RETRY, type RetryPolicy } from './transport.js';

/**
 * `jobline/client`: a typed client for the Jobline API, in Node 20+ and browsers. The types are
 * generated from the server's OpenAPI document (openapi-typescript) and the calls go through
 * openapi-fetch; this layer adds credentials, retries, idempotency keys, typed errors, paging,
 * live following and result waiting. `client.api` is the plain typed client for anything else.
 */

export { JoblineError, type JoblineErrorCode, type Problem } from './errors.js';
export { FINAL_EVENT_TYPES, type FollowOptions, type JobEvent } from './follow.js';
export { Paged, type Page } from './paging.js';
export type { RetryPolicy } from './transport.js';
export type { Session, StoredSession } from './credentials.js';
export type { components, paths } from './generated/api.js';

type Schemas = components['schemas'];
export type Job = Schemas['Job'];
export type JobSubmission = Schemas['JobSubmissionInput'];
export type JobState = Job['state'];
export type User = Schemas['User'];
export type ApiKey = Schemas['ApiKey'];
export type Queue = Schemas['Queue'];
export type Schedule = Schemas['Schedule'];
export type WebhookEndpoint = Schemas['WebhookEndpoint'];
export type WebhookDelivery = Schemas['WebhookDelivery'];
export type WebhookDeliveryDetail = Schemas['WebhookDeliveryDetail'];

type JsonBody<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;
type Query<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

export type ListJobsQuery = Omit<Query<'/v1/jobs', 'get'>, 'cursor' | 'state'> & { state?: JobState | JobState[] | string };
export type NewApiKey = JsonBody<'/v1/api-keys', 'post'>;
export type NewSchedule = JsonBody<'/v1/schedules', 'post'>;
export type ScheduleChanges = JsonBody<'/v1/schedules/{id}', 'patch'>;
export type NewWebhook = JsonBody<'/v1/webhooks', 'post'>;
export type WebhookChanges = JsonBody<'/v1/webhooks/{id}', 'patch'>;

export interface ClientOptions {
  /** The server, e.g. `http://localhost:3000`; in a browser, '' means the page's own origin. */
  baseUrl: string;
  /** Authenticate with an API key (jl_…)… */
  apiKey?: string | undefined;
  /** …or with a login session kept from before (see `onSession`); `login()` starts a new one. */
  session?: StoredSession | undefined;
  /** Called after a login and after every automatic refresh, to keep the new refresh token. */
  onSession?: ((session: Session) => void) | undefined;
  /** Retries on 429, 503 and lost connections: a count, or the whole policy. Default 3. */
  retries?: number | Partial<RetryPolicy> | undefined;
  /** The fetch to use (default: the global one). */
  fetch?: ((request: Request) => Promise<Response>) | undefined;
  /** Sent as User-Agent where the platform allows it (Node; browsers set their own). */
  userAgent?: string | undefined;
}

export interface SubmitOptions {
  /** Makes the submission safe to repeat; a random key is sent when none is given. */
  idempotencyKey?: string;
}

export interface Submitted {
  job: Job;
  /** False when an earlier job with the same idempotency or singleton key was returned. */
  created: boolean;
  deduplicatedBy: string | null;
}

export interface ResultOptions {
  /** Stop waiting after this long (ms) and return the job as it is; default: wait until it ends. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const FINISHED: readonly JobState[] = ['completed', 'failed', 'cancelled'];
const LONG_POLL_S = 60;

type Outcome<T> = Promise<{ data?: T; error?: unknown; response: Response }>;

/** The data of a call, or its JoblineError. */
async function unwrap<T>(call: Outcome<T>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok) throw errorFromBody(error, response);
  return data as T;
}

export function createClient(options: ClientOptions) {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const rawFetch = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const retry: RetryPolicy = { ...DEFAULT_RETRY, ...(typeof options.retries === 'number' ? { retries: options.retries } : options.retries) };
  const credentials = new Credentials({ apiKey: options.apiKey, session: options.session, baseUrl, fetch: rawFetch, onSession: options.onSession, now: Date.now });
  const send = createTransport({ fetch: rawFetch, credentials, retry, userAgent: options.userAgent });
  const api: Client<paths> = createFetchClient<paths>({ baseUrl, fetch: send });
  const id = (value: string) => ({ params: { path: { id: value } } });

  const jobs = {
    /** Submits a job. Every submission carries an Idempotency-Key, so a retried submit never makes two jobs. */
    async submit(job: JobSubmission, submitOptions: SubmitOptions = {}): Promise<Submitted> {
      const idempotencyKey = submitOptions.idempotencyKey ?? job.idempotencyKey ?? randomKey();
      const { data, error, response } = await api.POST('/v1/jobs', { body: job, params: { header: { 'idempotency-key': idempotencyKey } } });
      if (!response.ok || !data) throw errorFromBody(error, response);
      return { job: data, created: response.status === 201, deduplicatedBy: response.headers.get('jobline-deduplicated') };
    },
    /** Submits up to 1,000 jobs, all or nothing. */
    async submitBulk(list: JobSubmission[]): Promise<Job[]> {
      return (await unwrap(api.POST('/v1/jobs/bulk', { body: { jobs: list } }))).jobs;
    },
    get: (jobId: string): Promise<Job> => unwrap(api.GET('/v1/jobs/{id}', id(jobId))),
    list(query: ListJobsQuery = {}): Paged<Job> {
      const { state, ...rest } = query;
      const states = Array.isArray(state) ? state.join(',') : state;
      return new Paged((cursor) =>
        unwrap(api.GET('/v1/jobs', { params: { query: { ...rest, ...(states ? { state: states } : {}), ...(cursor ? { cursor } : {}) } } })),
      );
    },
    /** A page of the job's stored events after `fromSeq`. */
    async events(jobId: string, query: { fromSeq?: number; limit?: number } = {}): Promise<JobEvent[]> {
      return (await unwrap(api.GET('/v1/jobs/{id}/events', { params: { path: { id: jobId }, query } }))).items;
    },
    /** Every event after `fromSeq`, then live ones, ending after the final event; reconnects without gaps. */
    follow: (jobId: string, followOptions: FollowOptions = {}): AsyncGenerator<JobEvent, void, undefined> => followJob(send, baseUrl, jobId, followOptions),
    /** Waits (long-polling) until the job has finished and returns it; after `timeoutMs`, the job as it is. */
    async result(jobId: string, resultOptions: ResultOptions = {}): Promise<Job> {
      const deadline = resultOptions.timeoutMs === undefined ? Infinity : Date.now() + resultOptions.timeoutMs;
      for (;;) {
        const wait = Math.max(0, Math.min(LONG_POLL_S, Math.ceil((deadline - Date.now()) / 1000)));
        const job = await unwrap(
          api.GET('/v1/jobs/{id}/result', { params: { path: { id: jobId }, query: { wait } }, ...(resultOptions.signal ? { signal: resultOptions.signal } : {}) }),
        );
        if (FINISHED.includes(job.state) || Date.now() >= deadline) return job;
      }
    },
    cancel: (jobId: string): Promise<Job> => unwrap(api.POST('/v1/jobs/{id}/cancel', id(jobId))),
    retry: (jobId: string): Promise<Job> => unwrap(api.POST('/v1/jobs/{id}/retry', id(jobId))),
    delete: async (jobId: string): Promise<void> => void (await unwrap(api.DELETE('/v1/jobs/{id}', id(jobId)))),
  };

  const queue = (name: string) => ({ params: { path: { name } } });
  const queues = {
    list: (): Promise<Queue[]> => unwrap(api.GET('/v1/admin/queues')),
    pause: (name: string): Promise<Queue> => unwrap(api.POST('/v1/admin/queues/{name}/pause', queue(name))),
    resume: (name: string): Promise<Queue> => unwrap(api.POST('/v1/admin/queues/{name}/resume', queue(name))),
    retryFailed: async (name: string): Promise<number> => (await unwrap(api.POST('/v1/admin/queues/{name}/retry-failed', queue(name)))).retried,
    async clean(name: string, query: Query<'/v1/admin/queues/{name}/jobs', 'delete'>): Promise<number> {
      return (await unwrap(api.DELETE('/v1/admin/queues/{name}/jobs', { params: { path: { name }, query } }))).deleted;
    },
  };

  const schedules = {
    list: (): Paged<Schedule> => new Paged((cursor) => unwrap(api.GET('/v1/schedules', { params: { query: cursor ? { cursor } : {} } }))),
    get: (scheduleId: string): Promise<Schedule> => unwrap(api.GET('/v1/schedules/{id}', id(scheduleId))),
    create: (schedule: NewSchedule): Promise<Schedule> => unwrap(api.POST('/v1/schedules', { body: schedule })),
    update: (scheduleId: string, changes: ScheduleChanges): Promise<Schedule> => unwrap(api.PATCH('/v1/schedules/{id}', { ...id(scheduleId), body: changes })),
    pause: (scheduleId: string): Promise<Schedule> => schedules.update(scheduleId, { enabled: false }),
    resume: (scheduleId: string): Promise<Schedule> => schedules.update(scheduleId, { enabled: true }),
    delete: async (scheduleId: string): Promise<void> => void (await unwrap(api.DELETE('/v1/schedules/{id}', id(scheduleId)))),
    /** Runs the schedule's job now, outside its plan. */
    trigger: (scheduleId: string): Promise<Job> => unwrap(api.POST('/v1/schedules/{id}/trigger', id(scheduleId))),
  };

  const delivery = (endpointId: string, deliveryId: string) => ({ params: { path: { id: endpointId, deliveryId } } });
  const webhooks = {
    list: async (): Promise<WebhookEndpoint[]> => (await unwrap(api.GET('/v1/webhooks'))).items,
    get: (endpointId: string): Promise<WebhookEndpoint> => unwrap(api.GET('/v1/webhooks/{id}', id(endpointId))),
    /** Creates an endpoint; its `secret` is in this answer only. */
    create: (endpoint: NewWebhook) => unwrap(api.POST('/v1/webhooks', { body: endpoint })),
    update: (endpointId: string, changes: WebhookChanges) => unwrap(api.PATCH('/v1/webhooks/{id}', { ...id(endpointId), body: changes })),
    delete: async (endpointId: string): Promise<void> => void (await unwrap(api.DELETE('/v1/webhooks/{id}', id(endpointId)))),
    test: (endpointId: string): Promise<WebhookDelivery> => unwrap(api.POST('/v1/webhooks/{id}/test', id(endpointId))),
    deliveries(endpointId: string, query: Omit<Query<'/v1/webhooks/{id}/deliveries', 'get'>, 'cursor'> = {}): Paged<WebhookDelivery> {
      return new Paged((cursor) =>
        unwrap(api.GET('/v1/webhooks/{id}/deliveries', { params: { path: { id: endpointId }, query: { ...query, ...(cursor ? { cursor } : {}) } } })),
      );
    },
    delivery: (endpointId: string, deliveryId: string): Promise<WebhookDeliveryDetail> =>
      unwrap(api.GET('/v1/webhooks/{id}/deliveries/{deliveryId}', delivery(endpointId, deliveryId))),
    redeliver: (endpointId: string, deliveryId: string): Promise<WebhookDelivery> =>
      unwrap(api.POST('/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver', delivery(endpointId, deliveryId))),
  };

  const apiKeys = {
    list: async (): Promise<ApiKey[]> => (await unwrap(api.GET('/v1/api-keys'))).items,
    /** Creates a key; `key` is in this answer only. */
    create: (key: NewApiKey) => unwrap(api.POST('/v1/api-keys', { body: key })),
    revoke: async (keyId: string): Promise<void> => void (await unwrap(api.DELETE('/v1/api-keys/{id}', id(keyId)))),
  };

  const users = {
    list: (): Paged<User> => new Paged((cursor) => unwrap(api.GET('/v1/users', { params: { query: cursor ? { cursor } : {} } }))),
    get: (userId: string): Promise<User> => unwrap(api.GET('/v1/users/{id}', id(userId))),
    create: (user: JsonBody<'/v1/users', 'post'>): Promise<User> => unwrap(api.POST('/v1/users', { body: user })),
    update: (userId: string, changes: JsonBody<'/v1/users/{id}', 'patch'>): Promise<User> => unwrap(api.PATCH('/v1/users/{id}', { ...id(userId), body: changes })),
    delete: async (userId: string): Promise<void> => void (await unwrap(api.DELETE('/v1/users/{id}', id(userId)))),
  };

  return {
    /** The plain typed client (openapi-fetch) over the same transport: credentials, retries. */
    api,
    jobs,
    queues,
    schedules,
    webhooks,
    apiKeys,
    users,
    /** Logs in with email and password; later calls use the session and renew it as needed. */
    async login(email: string, password: string): Promise<Session> {
      const session = await unwrap(api.POST('/v1/auth/login', { body: { email, password } }));
      credentials.accept(session);
      return session;
    },
    /** Ends the session's login on the server and forgets it here. */
    async logout(): Promise<void> {
      const refreshToken = credentials.refreshToken;
      credentials.forget();
      if (refreshToken) await unwrap(api.POST('/v1/auth/logout', { body: { refreshToken } }));
    },
    me: (): Promise<User> => unwrap(api.GET('/v1/me')),
  };
}

export type JoblineClient = ReturnType<typeof createClient>;

/** A random UUID (v4); `crypto.randomUUID` is missing on pages served over plain http. */
function randomKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Whether a job has reached a final state. */
export function isFinished(job: Pick<Job, 'state'>): boolean {
  return FINISHED.includes(job.state);
}
