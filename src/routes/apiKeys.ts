import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf, type AuthGuards } from '../middleware/auth.js';
import type { Services } from '../services/index.js';
import { bearerSecurity, idParamsSchema, scopeSchema } from './schemas.js';

const apiKeySchema = z
  .object({
    id: z.string(),
    name: z.string(),
    prefix: z.string().meta({ description: 'The first characters of the key, to recognise it.' }),
    scopes: z.array(scopeSchema),
    createdAt: z.string(),
    expiresAt: z.string().nullable(),
    lastUsedAt: z.string().nullable(),
  })
  .meta({ id: 'ApiKey' });

export async function apiKeyRoutes(app: FastifyInstance, options: { services: Services; guards: AuthGuards }): Promise<void> {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { apiKeys } = options.services;
  const { guards } = options;

  routes.post(
    '/api-keys',
    {
      preValidation: guards.user('account:write'),
      schema: { operationId: 'createApiKey',
        tags: ['api keys'],
        summary: 'Create an API key (the key is shown only in this response)',
        security: bearerSecurity,
        body: z.object({
          name: z.string().trim().min(1).max(200),
          scopes: z.array(scopeSchema).min(1).max(20).optional().meta({ description: 'Default ["*"]: all you may do.' }),
          expiresAt: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time' }).optional(),
        }),
        response: { 201: apiKeySchema.extend({ key: z.string() }) },
      },
    },
    async (request, reply) => reply.code(201).send(await apiKeys.create(principalOf(request).userId, request.body)),
  );

  routes.get(
    '/api-keys',
    {
      preValidation: guards.user('account:read'),
      schema: { operationId: 'listApiKeys',
        tags: ['api keys'],
        summary: 'Your API keys that are not revoked',
        security: bearerSecurity,
        response: { 200: z.object({ items: z.array(apiKeySchema) }) },
      },
    },
    async (request) => ({ items: await apiKeys.list(principalOf(request).userId) }),
  );

  routes.delete(
    '/api-keys/:id',
    {
      preValidation: guards.user('account:write'),
      schema: { operationId: 'revokeApiKey', tags: ['api keys'], summary: 'Revoke an API key', security: bearerSecurity, params: idParamsSchema },
    },
    async (request, reply) => {
      await apiKeys.revoke(principalOf(request).userId, request.params.id);
      return reply.code(204).send();
    },
  );
}
