import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf, type AuthGuards } from '../middleware/auth.js';
import type { Services } from '../services/index.js';
import { errors } from '../utils/errors.js';
import {
  bearerSecurity,
  emailSchema,
  idParamsSchema,
  newPasswordSchema,
  pageSchema,
  paginationQuerySchema,
  roleSchema,
  userSchema,
} from './schemas.js';

export async function userRoutes(app: FastifyInstance, options: { services: Services; guards: AuthGuards }): Promise<void> {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { users } = options.services;
  const { guards } = options;

  routes.get(
    '/me',
    {
      preValidation: guards.user('account:read'),
      schema: { operationId: 'getMe', tags: ['accounts'], summary: 'The calling user', security: bearerSecurity, response: { 200: userSchema } },
    },
    async (request) => users.get(principalOf(request).userId),
  );

  routes.patch(
    '/me',
    {
      preValidation: guards.user('account:write'),
      schema: { operationId: 'updateMe',
        tags: ['accounts'],
        summary: 'Change your password (ends your other sessions)',
        security: bearerSecurity,
        body: z.object({ currentPassword: z.string().min(1).max(1024), password: newPasswordSchema }),
        response: { 200: userSchema },
      },
    },
    async (request) => users.changePassword(principalOf(request).userId, request.body.currentPassword, request.body.password),
  );

  const adminOnly = guards.admin('admin');

  routes.get(
    '/users',
    {
      preValidation: adminOnly,
      schema: { operationId: 'listUsers',
        tags: ['users'],
        summary: 'List users, newest first (admin)',
        security: bearerSecurity,
        querystring: paginationQuerySchema,
        response: { 200: pageSchema(userSchema) },
      },
    },
    async (request) => users.list(request.query),
  );

  routes.post(
    '/users',
    {
      preValidation: adminOnly,
      schema: { operationId: 'createUser',
        tags: ['users'],
        summary: 'Create a user (admin)',
        security: bearerSecurity,
        body: z.object({ email: emailSchema, password: newPasswordSchema, role: roleSchema.default('user') }),
        response: { 201: userSchema },
      },
    },
    async (request, reply) => reply.code(201).send(await users.create(request.body)),
  );

  routes.get(
    '/users/:id',
    {
      preValidation: adminOnly,
      schema: { operationId: 'getUser', tags: ['users'], summary: 'One user (admin)', security: bearerSecurity, params: idParamsSchema, response: { 200: userSchema } },
    },
    async (request) => users.get(request.params.id),
  );

  routes.patch(
    '/users/:id',
    {
      preValidation: adminOnly,
      schema: { operationId: 'updateUser',
        tags: ['users'],
        summary: 'Change a user’s email, password or role (admin)',
        description: 'A new password or role ends the user’s sessions. The last admin cannot be demoted.',
        security: bearerSecurity,
        params: idParamsSchema,
        body: z
          .object({ email: emailSchema.optional(), password: newPasswordSchema.optional(), role: roleSchema.optional() })
          .strict(),
        response: { 200: userSchema },
      },
    },
    async (request) => {
      if (Object.keys(request.body).length === 0) throw errors.badRequest('Send at least one of email, password, role.');
      return users.update(request.params.id, request.body);
    },
  );

  routes.delete(
    '/users/:id',
    {
      preValidation: adminOnly,
      schema: { operationId: 'deleteUser',
        tags: ['users'],
        summary: 'Delete a user with their API keys and sessions (admin)',
        description: 'The last admin cannot be deleted.',
        security: bearerSecurity,
        params: idParamsSchema,
      },
    },
    async (request, reply) => {
      await users.delete(request.params.id);
      return reply.code(204).send();
    },
  );
}
