import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { PRIORITY_MAX, PRIORITY_MIN } from '../engine/lifecycle.js';
import { JOB_STATES } from '../engine/types.js';
import { principalOf, type AuthGuards } from '../middleware/auth.js';
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

export const jobInputSchema = z
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
  .meta({ id: 'Job' });

export const eventSchema = z
  .object({ type: z.string(), jobId: z.string(), seq: z.number(), at: z.string(), data: z.record(z.string(), z.unknown()) })
  .meta({ id: 'JobEvent' });

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

export async function jobRoutes(app: FastifyInstance, options: { services: Services; guards: AuthGuards }): Promise<void> {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { jobs } = options.services;
  const { guards } = options;

  routes.post(
    '/jobs',
    {
      preHandler: guards.user('jobs:write'),
      schema: {
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
      preHandler: guards.user('jobs:write'),
      bodyLimit: BULK_BODY_LIMIT,
      schema: {
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
      preHandler: guards.user('jobs:read'),
      schema: {
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
      preHandler: guards.user('jobs:read'),
      schema: { tags: ['jobs'], summary: 'One job', security: bearerSecurity, params: idParamsSchema, response: { 200: jobSchema } },
    },
    async (request) => jobs.get(principalOf(request), request.params.id),
  );

  routes.get(
    '/jobs/:id/events',
    {
      preHandler: guards.user('jobs:read'),
      schema: {
        tags: ['jobs'],
        summary: 'A job’s events after `fromSeq`, in order',
        security: bearerSecurity,
        params: idParamsSchema,
        querystring: z.object({
          fromSeq: z.coerce.number().int().min(0).default(0),
          limit: z.coerce.number().int().min(1).max(10_000).default(1000),
        }),
        response: { 200: z.object({ items: z.array(eventSchema) }) },
      },
    },
    async (request) => ({
      items: await jobs.events(principalOf(request), request.params.id, request.query.fromSeq, request.query.limit),
    }),
  );

  for (const action of ['cancel', 'retry'] as const) {
    routes.post(
      `/jobs/:id/${action}`,
      {
        preHandler: guards.user('jobs:write'),
        schema: {
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
      preHandler: guards.user('jobs:write'),
      schema: { tags: ['jobs'], summary: 'Delete a finished job and its events', security: bearerSecurity, params: idParamsSchema },
    },
    async (request, reply) => {
      await jobs.delete(principalOf(request), request.params.id);
      return reply.code(204).send();
    },
  );
}
