import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf, type AuthGuards } from '../middleware/auth.js';
import type { Services } from '../services/index.js';
import { WEBHOOK_EVENT_FILTERS } from '../webhooks/webhookRecords.js';
import { bearerSecurity, idParamsSchema, pageSchema, paginationQuerySchema } from './schemas.js';

/** Queue names as jobs accept them. */
const QUEUE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/;
const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed'] as const;

const urlSchema = z.string().trim().min(1).max(2048).meta({
  description: 'http(s) URL. Private, loopback, link-local and metadata addresses are refused unless JOBLINE_OUTBOUND_ALLOW admits them.',
});
const eventsSchema = z
  .array(z.enum(WEBHOOK_EVENT_FILTERS, { error: `must be one of ${WEBHOOK_EVENT_FILTERS.join(', ')}` }))
  .min(1)
  .max(20)
  .meta({ description: '`*` is every event except job.delta, job.progress and job.log, which are sent only when listed.' });
const queueSchema = z.string().regex(QUEUE_PATTERN, 'must be letters, digits and _ . : - (up to 200)');
const descriptionSchema = z.string().trim().max(500);

const endpointSchema = z
  .object({
    id: z.string(),
    ownerId: z.string(),
    url: z.string(),
    description: z.string().nullable(),
    events: z.array(z.string()),
    queue: z.string().nullable(),
    enabled: z.boolean(),
    disabledReason: z.string().nullable().meta({ description: 'Why Jobline disabled the endpoint (410 Gone, or failing too long).' }),
    failingSince: z.string().nullable().meta({ description: 'Since when every attempt has failed.' }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'WebhookEndpoint' });
const secretSchema = z.string().meta({ description: 'The signing secret (`whsec_…`); shown only when created or rotated.' });

const errorInfoSchema = z.object({ code: z.string(), message: z.string() }).nullable();
const deliveryFields = {
  id: z.string().meta({ description: 'The `webhook-id` header: the same on every attempt.' }),
  endpointId: z.string(),
  eventType: z.string(),
  jobId: z.string().nullable(),
  eventSeq: z.number().nullable(),
  status: z.enum(DELIVERY_STATUSES),
  lastStatusCode: z.number().nullable(),
  lastError: errorInfoSchema,
  createdAt: z.string(),
  nextAttemptAt: z.string().nullable(),
};
const deliverySchema = z.object({ ...deliveryFields, attempts: z.number() }).meta({ id: 'WebhookDelivery' });
const attemptSchema = z
  .object({
    attemptedAt: z.string(),
    statusCode: z.number().nullable(),
    durationMs: z.number(),
    error: errorInfoSchema,
    responseExcerpt: z.string().nullable().meta({ description: 'The first 1 KiB of the response body.' }),
  })
  .meta({ id: 'WebhookAttempt' });
const deliveryDetailSchema = z
  .object({ ...deliveryFields, payload: z.unknown(), attempts: z.array(attemptSchema) })
  .meta({ id: 'WebhookDeliveryDetail' });
const deliveryParamsSchema = idParamsSchema.extend({
  deliveryId: z.string().regex(/^msg_[0-9a-f-]{36}$/i, 'must be a delivery id (msg_…)'),
});

export async function webhookRoutes(app: FastifyInstance, options: { services: Services; guards: AuthGuards }): Promise<void> {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { webhooks } = options.services;
  const { guards } = options;
  const base = { tags: ['webhooks'], security: bearerSecurity };

  routes.post(
    '/webhooks',
    {
      preValidation: guards.user('webhooks:write'),
      schema: { operationId: 'createWebhook',
        ...base,
        summary: 'Create a webhook endpoint (its secret is shown in this answer)',
        body: z.strictObject({ url: urlSchema, events: eventsSchema, queue: queueSchema.optional(), description: descriptionSchema.optional() }),
        response: { 201: endpointSchema.extend({ secret: secretSchema }) },
      },
    },
    async (request, reply) => reply.code(201).send(await webhooks.create(principalOf(request), request.body)),
  );

  routes.get(
    '/webhooks',
    {
      preValidation: guards.user('webhooks:read'),
      schema: { operationId: 'listWebhooks', ...base, summary: 'Your webhook endpoints (every one for an admin)', response: { 200: z.object({ items: z.array(endpointSchema) }) } },
    },
    async (request) => ({ items: await webhooks.list(principalOf(request)) }),
  );

  routes.get(
    '/webhooks/:id',
    {
      preValidation: guards.user('webhooks:read'),
      schema: { operationId: 'getWebhook', ...base, summary: 'One webhook endpoint', params: idParamsSchema, response: { 200: endpointSchema } },
    },
    async (request) => webhooks.get(principalOf(request), request.params.id),
  );

  routes.patch(
    '/webhooks/:id',
    {
      preValidation: guards.user('webhooks:write'),
      schema: { operationId: 'updateWebhook',
        ...base,
        summary: 'Change, enable or disable an endpoint, or rotate its secret',
        description:
          '`enabled: true` clears `disabledReason` and `failingSince`. `rotateSecret: true` answers with the new `secret`; ' +
          'for 24 hours deliveries carry signatures with both the new and the old secret.',
        params: idParamsSchema,
        body: z.strictObject({
          url: urlSchema.optional(),
          events: eventsSchema.optional(),
          queue: queueSchema.nullable().optional(),
          description: descriptionSchema.nullable().optional(),
          enabled: z.boolean().optional(),
          rotateSecret: z.literal(true).optional(),
        }),
        response: { 200: endpointSchema.extend({ secret: secretSchema.optional() }) },
      },
    },
    async (request) => webhooks.update(principalOf(request), request.params.id, request.body),
  );

  routes.delete(
    '/webhooks/:id',
    {
      preValidation: guards.user('webhooks:write'),
      schema: { operationId: 'deleteWebhook', ...base, summary: 'Delete an endpoint with its delivery log', params: idParamsSchema },
    },
    async (request, reply) => {
      await webhooks.delete(principalOf(request), request.params.id);
      return reply.code(204).send();
    },
  );

  routes.post(
    '/webhooks/:id/test',
    {
      preValidation: guards.user('webhooks:write'),
      schema: { operationId: 'testWebhook', ...base, summary: 'Send a `webhook.test` delivery now', params: idParamsSchema, response: { 202: deliverySchema } },
    },
    async (request, reply) => reply.code(202).send(await webhooks.sendTest(principalOf(request), request.params.id)),
  );

  routes.get(
    '/webhooks/:id/deliveries',
    {
      preValidation: guards.user('webhooks:read'),
      schema: { operationId: 'listWebhookDeliveries',
        ...base,
        summary: 'The endpoint’s deliveries, newest first',
        params: idParamsSchema,
        querystring: paginationQuerySchema.extend({ status: z.enum(DELIVERY_STATUSES).optional() }),
        response: { 200: pageSchema(deliverySchema) },
      },
    },
    async (request) => webhooks.listDeliveries(principalOf(request), request.params.id, request.query),
  );

  routes.get(
    '/webhooks/:id/deliveries/:deliveryId',
    {
      preValidation: guards.user('webhooks:read'),
      schema: { operationId: 'getWebhookDelivery',
        ...base,
        summary: 'One delivery: its body and every attempt (status, duration, error, response excerpt)',
        params: deliveryParamsSchema,
        response: { 200: deliveryDetailSchema },
      },
    },
    async (request) => webhooks.getDelivery(principalOf(request), request.params.id, request.params.deliveryId),
  );

  routes.post(
    '/webhooks/:id/deliveries/:deliveryId/redeliver',
    {
      preValidation: guards.user('webhooks:write'),
      schema: { operationId: 'redeliverWebhook',
        ...base,
        summary: 'Send a delivery again now (a new series of attempts, the same webhook-id and body)',
        params: deliveryParamsSchema,
        response: { 202: deliverySchema },
      },
    },
    async (request, reply) =>
      reply.code(202).send(await webhooks.redeliver(principalOf(request), request.params.id, request.params.deliveryId)),
  );
}
