import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { RealtimeMetrics } from '../config/metrics.js';
import { PRIORITY_MAX, PRIORITY_MIN } from '../engine/lifecycle.js';
import { JOB_STATES } from '../engine/types.js';
import { principalOf, type AuthGuards } from '../middleware/auth.js';
import type { LiveSessions } from '../realtime/sessions.js';
import { streamJobEvents } from '../realtime/sse.js';
import type { Services } from '../services/index.js';
import { bearerSecurity, idParamsSchema } from './schemas.js';

const DAY_MS = 86_400_000;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/;
const BULK_MAX = 1000;
const BULK_BODY_LIMIT = 64 * 1024 * 1024;
const backoffSchema = z
  .object({
    type: z.enum(['fixed', 'exponential']),
    delay: z.number().int().min(0).max(7 * DAY_MS).meta({ description: 'Base delay (ms).' }),
    maxDelay: z.number().int().min(0).max(30 * DAY_MS).optional(),
    jitter: z.number().min(0).max(1).optional().meta({ description: '0–1: random spread around each delay.' }),
  })
  .strict();

/** A job's fields; `jobInputSchema` adds the rules across fields. Schedules' templates reuse it. */
export const jobFieldsSchema = z
  .object({
    type: z.string().min(1).max(200),
    payload: z.unknown().optional(),
    queue: z.string().regex(NAME_PATTERN, 'must be letters, digits and _ . : - (up to 200)').optional(),
    priority: z.number().int().min(PRIORITY_MIN).max(PRIORITY_MAX).optional().meta({ description: 'Higher runs first; default 0.' }),
    delay: z.number().int().min(0).max(365 * DAY_MS).optional().meta({ description: 'Run no sooner than this many ms from now.' }),
    runAt: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time' }).optional(),
    attempts: z.number().int().min(1).max(100).optional().meta({ description: 'Tries in all; default 3.' }),
    backoff: backoffSchema.optional(),
    timeout: z.number().int().min(1).max(DAY_MS).optional().meta({ description: 'Per attempt (ms).' }),
    ttl: z.number().int().min(1).max(365 * DAY_MS).optional().meta({ description: 'Fail as expired if not started within this many ms of its run time.' }),
    idempotencyKey: z.string().min(1).max(255).optional(),
    singletonKey: z.string().min(1).max(255).optional(),
    tags: z.array(z.string().min(1).max(64)).max(20).optional(),
  })
  .strict();

export const jobInputSchema = jobFieldsSchema
  .refine((job) => job.delay === undefined || job.runAt === undefined, {
    message: 'send delay or runAt, not both',
    path: ['runAt'],
  })
  .meta({
    id: 'JobSubmission',
    examples: [{ type: 'greet', payload: { name: 'Ada' }, queue: 'default', attempts: 5, backoff: { type: 'exponential', delay: 1000 }, tags: ['demo'] }],
  });

export const jobSchema = z
  .object({
    id: z.string(),
    type: z.string(),
    queue: z.string(),
    state: z.enum(JOB_STATES),
    priority: z.number(),
    payload: z.unknown(),
    result: z.unknown(),
    error: z.object({ message: z.string(), code: z.string().optional() }).nullable(),
    progress: z.unknown(),
    attemptsMade: z.number(),
    maxAttempts: z.number(),
    tags: z.array(z.string()),
    createdAt: z.string(),
    runAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
    ownerId: z.string(),
    scheduleId: z.string().nullable(),
    backoff: z.object({ type: z.enum(['fixed', 'exponential']), delay: z.number(), maxDelay: z.number().optional(), jitter: z.number().optional() }),
    timeout: z.number().nullable(),
    expiresAt: z.string().nullable(),
    idempotencyKey: z.string().nullable(),
    singletonKey: z.string().nullable(),
  })
  .meta({
    id: 'Job',
    examples: [
      {
        id: '0195d3c4-5b6a-7c8d-9e0f-123456789abc',
        type: 'greet',
        queue: 'default',
        state: 'completed',
        priority: 0,
        payload: { name: 'Ada' },
        result: { greeting: 'Hello, Ada!' },
        error: null,
        progress: 100,
        attemptsMade: 1,
        maxAttempts: 5,
        tags: ['demo'],
        createdAt: '2026-12-04T09:00:00.000Z',
        runAt: '2026-12-04T09:00:00.000Z',
        startedAt: '2026-12-04T09:00:00.012Z',
        finishedAt: '2026-12-04T09:00:00.140Z',
        ownerId: '0195d3c4-0000-7000-8000-000000000001',
        scheduleId: null,
        backoff: { type: 'exponential', delay: 1000 },
        timeout: null,
        expiresAt: null,
        idempotencyKey: null,
        singletonKey: null,
      },
    ],
  });

export const eventSchema = z
  .object({ type: z.string(), jobId: z.string(), seq: z.number(), at: z.string(), data: z.record(z.string(), z.unknown()) })
  .meta({
    id: 'JobEvent',
    examples: [{ type: 'job.progress', jobId: '0195d3c4-5b6a-7c8d-9e0f-123456789abc', seq: 3, at: '2026-12-04T09:00:00.050Z', data: { progress: 50 } }],
  });

const stateListSchema = z
  .string()
  .transform((value) => value.split(',').map((part) => part.trim()))
  .pipe(z.array(z.enum(JOB_STATES)));

const listQuerySchema = z.object({
  state: stateListSchema.optional().meta({ description: 'One state or several, comma-separated.' }),
  queue: z.string().max(200).optional(),
  type: z.string().max(200).optional(),
  tag: z.string().max(64).optional(),
  createdAfter: z.iso.datetime({ offset: true }).optional(),
  createdBefore: z.iso.datetime({ offset: true }).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional(),
});

export async function jobRoutes(
  app: FastifyInstance,
  options: { services: Services; guards: AuthGuards; realtime: RealtimeMetrics; sessions: LiveSessions },
): Promise<void> {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { jobs } = options.services;
  const { guards } = options;

  routes.post(
    '/jobs',
    {
      preValidation: guards.user('jobs:write'),
      schema: { operationId: 'submitJob',
        tags: ['jobs'],
        summary: 'Submit a job',
        description:
          'An `Idempotency-Key` header (or `idempotencyKey`) makes retries safe: the same key from the same user returns ' +
          'the first job with 200. A `singletonKey` already held by a queued or active job of yours also returns that job ' +
          'with 200. The `jobline-deduplicated` header says which.',
        security: bearerSecurity,
        headers: z.object({ 'idempotency-key': z.string().min(1).max(255).optional() }),
        body: jobInputSchema,
        response: { 200: jobSchema, 201: jobSchema },
      },
    },
    async (request, reply) => {
      const { job, created, deduplicatedBy } = await jobs.submit(principalOf(request), request.body, request.headers['idempotency-key']);
      if (deduplicatedBy) reply.header('jobline-deduplicated', deduplicatedBy);
      return reply.code(created ? 201 : 200).send(job);
    },
  );

  routes.post(
    '/jobs/bulk',
    {
      preValidation: guards.user('jobs:write'),
      bodyLimit: BULK_BODY_LIMIT,
      schema: { operationId: 'submitJobs',
        tags: ['jobs'],
        summary: `Submit up to ${BULK_MAX} jobs, all or nothing`,
        security: bearerSecurity,
        body: z.object({ jobs: z.array(jobInputSchema).min(1).max(BULK_MAX) }).strict(),
        response: { 201: z.object({ jobs: z.array(jobSchema) }) },
      },
    },
    async (request, reply) => reply.code(201).send({ jobs: await jobs.submitBulk(principalOf(request), request.body.jobs) }),
  );

  routes.get(
    '/jobs',
    {
      preValidation: guards.user('jobs:read'),
      schema: { operationId: 'listJobs',
        tags: ['jobs'],
        summary: 'List jobs, newest first (yours; every job for an admin)',
        security: bearerSecurity,
        querystring: listQuerySchema,
        response: { 200: z.object({ items: z.array(jobSchema), nextCursor: z.string().nullable() }) },
      },
    },
    async (request) => jobs.list(principalOf(request), request.query),
  );

  routes.get(
    '/jobs/:id',
    {
      preValidation: guards.user('jobs:read'),
      schema: { operationId: 'getJob', tags: ['jobs'], summary: 'One job', security: bearerSecurity, params: idParamsSchema, response: { 200: jobSchema } },
    },
    async (request) => jobs.get(principalOf(request), request.params.id),
  );

  // Open event streams, ended when the server shuts down so closing never waits on a client.
  const streams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of streams) end();
  });

  routes.get(
    '/jobs/:id/events',
    {
      preValidation: guards.user('jobs:read'),
      schema: { operationId: 'listJobEvents',
        tags: ['jobs'],
        summary: 'A job’s events after `fromSeq`, in order; with Accept: text/event-stream, a live stream',
        description:
          'With `Accept: text/event-stream` the answer is Server-Sent Events: `id:` is the seq, `event:` the type, `data:` ' +
          'the event object. It replays events after `fromSeq` (or the `Last-Event-ID` header), continues live, sends a ' +
          '`: ping` comment every 15 s, and ends after the job’s final event.',
        security: bearerSecurity,
        params: idParamsSchema,
        headers: z.object({ 'last-event-id': z.string().regex(/^\d+$/).optional() }),
        querystring: z.object({
          fromSeq: z.coerce.number().int().min(0).default(0),
          limit: z.coerce.number().int().min(1).max(10_000).default(1000),
        }),
        response: {
          200: z.object({ items: z.array(eventSchema) }),
          204: z.null().describe('Event stream only: the job has ended and the stream would carry nothing after `fromSeq`.'),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { id } = request.params;
      if (!String(request.headers.accept ?? '').includes('text/event-stream')) {
        return { items: await jobs.events(principal, id, request.query.fromSeq, request.query.limit) };
      }
      const lastEventId = request.headers['last-event-id'];
      const fromSeq = lastEventId === undefined ? request.query.fromSeq : Number(lastEventId);
      await streamJobEvents({ request, reply, principal, jobId: id, fromSeq, jobs, metrics: options.realtime, sessions: options.sessions, streams });
      return reply;
    },
  );

  routes.get(
    '/jobs/:id/result',
    {
      preValidation: guards.user('jobs:read'),
      schema: { operationId: 'getJobResult',
        tags: ['jobs'],
        summary: 'The job once it has finished, waiting up to `wait` seconds (≤ 60); the job as it is otherwise',
        security: bearerSecurity,
        params: idParamsSchema,
        querystring: z.object({ wait: z.coerce.number().int().min(0).max(60).default(0) }),
        response: { 200: jobSchema },
      },
    },
    async (request) => {
      // Shutdown answers waiting polls at once (with the job as it is) instead of holding the exit.
      const stop = new AbortController();
      const abort = () => stop.abort();
      streams.add(abort);
      try {
        return await jobs.waitForResult(principalOf(request), request.params.id, request.query.wait * 1000, stop.signal);
      } finally {
        streams.delete(abort);
      }
    },
  );

  for (const action of ['cancel', 'retry'] as const) {
    routes.post(
      `/jobs/:id/${action}`,
      {
        preValidation: guards.user('jobs:write'),
        schema: {
          operationId: action === 'cancel' ? 'cancelJob' : 'retryJob',
          tags: ['jobs'],
          summary:
            action === 'cancel'
              ? 'Cancel a queued, scheduled or active job (an active job’s AbortSignal fires)'
              : 'Put a failed or cancelled job back in its queue with fresh attempts',
          security: bearerSecurity,
          params: idParamsSchema,
          response: { 200: jobSchema },
        },
      },
      async (request) => jobs[action](principalOf(request), request.params.id),
    );
  }

  routes.delete(
    '/jobs/:id',
    {
      preValidation: guards.user('jobs:write'),
      schema: { operationId: 'deleteJob', tags: ['jobs'], summary: 'Delete a finished job and its events', security: bearerSecurity, params: idParamsSchema },
    },
    async (request, reply) => {
      await jobs.delete(principalOf(request), request.params.id);
      return reply.code(204).send();
    },
  );
}
