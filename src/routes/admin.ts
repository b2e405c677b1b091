import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { JOB_STATES } from '../engine/types.js';
import type { AuthGuards } from '../middleware/auth.js';
import type { Services } from '../services/index.js';
import { bearerSecurity } from './schemas.js';

const queueParams = z.object({ name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/, 'must be a queue name') });
const queueSchema = z
  .object({
    name: z.string(),
    paused: z.boolean(),
    counts: z.object(Object.fromEntries(JOB_STATES.map((state) => [state, z.number()])) as Record<(typeof JOB_STATES)[number], z.ZodNumber>),
  })
  .meta({ id: 'Queue' });

export async function adminRoutes(app: FastifyInstance, options: { services: Services; guards: AuthGuards }): Promise<void> {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { queues } = options.services;
  const adminOnly = options.guards.admin('admin');

  routes.get(
    '/admin/queues',
    {
      preValidation: adminOnly,
      schema: { operationId: 'listQueues', tags: ['admin'], summary: 'Every queue with its job counts', security: bearerSecurity, response: { 200: z.array(queueSchema) } },
    },
    async () => queues.list(),
  );

  for (const action of ['pause', 'resume'] as const) {
    routes.post(
      `/admin/queues/:name/${action}`,
      {
        preValidation: adminOnly,
        schema: {
          operationId: action === 'pause' ? 'pauseQueue' : 'resumeQueue',
          tags: ['admin'],
          summary:
            action === 'pause'
              ? 'Hold a queue’s jobs, also those submitted later (running ones finish); a queue with no jobs yet may be paused'
              : 'Let a paused queue’s jobs run again',
          security: bearerSecurity,
          params: queueParams,
          response: { 200: queueSchema },
        },
      },
      async (request) => queues[action](request.params.name),
    );
  }

  routes.post(
    '/admin/queues/:name/retry-failed',
    {
      preValidation: adminOnly,
      schema: { operationId: 'retryFailedJobs',
        tags: ['admin'],
        summary: 'Put every failed job of a queue back in it (the dead-letter queue, replayed)',
        security: bearerSecurity,
        params: queueParams,
        response: { 200: z.object({ retried: z.number() }) },
      },
    },
    async (request) => ({ retried: await queues.retryFailed(request.params.name) }),
  );

  routes.delete(
    '/admin/queues/:name/jobs',
    {
      preValidation: adminOnly,
      schema: { operationId: 'cleanQueue',
        tags: ['admin'],
        summary: 'Delete a queue’s finished jobs in one state, optionally only those finished before `olderThan`',
        security: bearerSecurity,
        params: queueParams,
        querystring: z.object({
          state: z.enum(['completed', 'failed', 'cancelled']),
          olderThan: z.iso.datetime({ offset: true }).optional(),
        }),
        response: { 200: z.object({ deleted: z.number() }) },
      },
    },
    async (request) => ({
      deleted: await queues.clean(
        request.params.name,
        request.query.state,
        request.query.olderThan === undefined ? null : Date.parse(request.query.olderThan),
      ),
    }),
  );
}
