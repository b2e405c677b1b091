import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Services } from '../services/index.js';
import { emailSchema, newPasswordSchema, sessionSchema, userSchema } from './schemas.js';

const credentialsSchema = z.object({
  email: z.string().min(1).max(320),
  password: z.string().min(1).max(1024),
});
const refreshSchema = z.object({ refreshToken: z.string().min(1).max(512) });

export async function authRoutes(app: FastifyInstance, options: { services: Services }): Promise<void> {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { auth } = options.services;

  routes.post(
    '/auth/login',
    {
      schema: { operationId: 'login', security: [],
        tags: ['accounts'],
        summary: 'Log in with email and password',
        description: 'Wrong password and unknown email answer alike (401). Repeated failures answer 429 with Retry-After.',
        body: credentialsSchema,
        response: { 200: sessionSchema },
      },
    },
    async (request) => auth.login(request.body.email, request.body.password, request.ip),
  );

  routes.post(
    '/auth/refresh',
    {
      schema: { operationId: 'refreshSession', security: [],
        tags: ['accounts'],
        summary: 'Exchange a refresh token for new tokens',
        description: 'The refresh token is single-use; presenting it again revokes every token of that login.',
        body: refreshSchema,
        response: { 200: sessionSchema },
      },
    },
    async (request) => auth.refresh(request.body.refreshToken),
  );

  routes.post(
    '/auth/logout',
    { schema: { operationId: 'logout', security: [], tags: ['accounts'], summary: 'End the login of a refresh token', body: refreshSchema } },
    async (request, reply) => {
      await auth.logout(request.body.refreshToken);
      return reply.code(204).send();
    },
  );

  routes.post(
    '/auth/register',
    {
      schema: { operationId: 'register', security: [],
        tags: ['accounts'],
        summary: 'Create an account (only with JOBLINE_OPEN_REGISTRATION=true)',
        body: z.object({ email: emailSchema, password: newPasswordSchema }),
        response: { 201: userSchema },
      },
    },
    async (request, reply) => reply.code(201).send(await auth.register(request.body.email, request.body.password)),
  );

  routes.post(
    '/auth/password/forgot',
    {
      schema: { operationId: 'requestPasswordReset', security: [],
        tags: ['accounts'],
        summary: 'Mail a password reset token',
        description: 'Always 202, whether or not the email belongs to an account.',
        body: z.object({ email: z.string().min(1).max(320) }),
        response: { 202: z.object({ status: z.literal('accepted') }) },
      },
    },
    async (request, reply) => {
      auth.forgotPasswordInBackground(request.body.email);
      return reply.code(202).send({ status: 'accepted' as const });
    },
  );

  routes.post(
    '/auth/password/reset',
    {
      schema: { operationId: 'resetPassword', security: [],
        tags: ['accounts'],
        summary: 'Set a new password with a reset token (works once, within 30 minutes)',
        body: z.object({ token: z.string().min(1).max(512), password: newPasswordSchema }),
      },
    },
    async (request, reply) => {
      await auth.resetPassword(request.body.token, request.body.password);
      return reply.code(204).send();
    },
  );
}
