import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf, type AuthGuards } from '../middleware/auth.js';
import type { Services } from '../services/index.js';
import { jobFieldsSchema, jobSchema } from './jobs.js';
import { bearerSecurity, idParamsSchema, pageSchema, paginationQuerySchema } from './schemas.js';

const templateSchema = jobFieldsSchema.omit({ delay: true, runAt: true, idempotencyKey: true }).meta({ id: 'JobTemplate' });

const scheduleFields = {
  name: z.string().trim().min(1).max(200),
  cron: z.string().min(1).max(200).meta({ description: '5 fields (minute hour day month weekday), or 6 with seconds first, or @daily etc.' }),
  timezone: z.string().min(1).max(64).optional().meta({ description: 'An IANA zone such as Europe/Berlin; default UTC.' }),
  job: templateSchema,
  overlap: z.enum(['allow', 'skip']).optional().meta({ description: 'skip: no new job while the previous one is queued or running.' }),
  catchUp: z.enum(['none', 'once']).optional().meta({ description: 'once: one job for fire times missed while the scheduler was down.' }),
  enabled: z.boolean().optional(),
};

const scheduleSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    cron: z.string(),
    timezone: z.string(),
    job: z.record(z.string(), z.unknown()),
    overlap: z.enum(['allow', 'skip']),
    catchUp: z.enum(['none', 'once']),
    enabled: z.boolean(),
    nextRunAt: z.string().nullable(),
    lastRunAt: z.string().nullable(),
    upcoming: z.array(z.string()),
    ownerId: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Schedule' });

export async function scheduleRoutes(app: FastifyInstance, options: { services: Services; guards: AuthGuards }): Promise<void> {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { schedules } = options.services;
  const { guards } = options;

  routes.post(
    '/schedules',
    {
      preValidation: guards.user('schedules:write'),
      schema: { operationId: 'createSchedule',
        tags: ['schedules'],
        summary: 'Create a cron schedule',
        security: bearerSecurity,
        body: z.object(scheduleFields).strict(),
        response: { 201: scheduleSchema },
      },
    },
    async (request, reply) => reply.code(201).send(await schedules.create(principalOf(request), request.body)),
  );

  routes.get(
    '/schedules',
    {
      preValidation: guards.user('schedules:read'),
      schema: { operationId: 'listSchedules',
        tags: ['schedules'],
        summary: 'Your schedules (every schedule for an admin), newest first',
        security: bearerSecurity,
        querystring: paginationQuerySchema,
        response: { 200: pageSchema(scheduleSchema) },
      },
    },
    async (request) => schedules.list(principalOf(request), request.query),
  );

  routes.get(
    '/schedules/:id',
    {
      preValidation: guards.user('schedules:read'),
      schema: { operationId: 'getSchedule', tags: ['schedules'], summary: 'One schedule', security: bearerSecurity, params: idParamsSchema, response: { 200: scheduleSchema } },
    },
    async (request) => schedules.get(principalOf(request), request.params.id),
  );

  routes.patch(
    '/schedules/:id',
    {
      preValidation: guards.user('schedules:write'),
      schema: { operationId: 'updateSchedule',
        tags: ['schedules'],
        summary: 'Change a schedule (a new cron, zone or enabling plans from now)',
        security: bearerSecurity,
        params: idParamsSchema,
        body: z.object(scheduleFields).partial().strict(),
        response: { 200: scheduleSchema },
      },
    },
    async (request) => schedules.update(principalOf(request), request.params.id, request.body),
  );

  routes.delete(
    '/schedules/:id',
    {
      preValidation: guards.user('schedules:write'),
      schema: { operationId: 'deleteSchedule', tags: ['schedules'], summary: 'Delete a schedule (its jobs stay)', security: bearerSecurity, params: idParamsSchema },
    },
    async (request, reply) => {
      await schedules.delete(principalOf(request), request.params.id);
      return reply.code(204).send();
    },
  );

  routes.post(
    '/schedules/:id/trigger',
    {
      preValidation: guards.user('schedules:write'),
      schema: { operationId: 'triggerSchedule',
        tags: ['schedules'],
        summary: 'Run the schedule’s job now, outside its plan',
        security: bearerSecurity,
        params: idParamsSchema,
        response: { 201: jobSchema },
      },
    },
    async (request, reply) => reply.code(201).send(await schedules.trigger(principalOf(request), request.params.id)),
  );
}
