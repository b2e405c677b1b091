import type { FastifyInstance } from 'fastify';
import type { RealtimeMetrics } from '../config/metrics.js';
import type { LiveSessions } from '../realtime/sessions.js';
import type { AuthGuards } from '../middleware/auth.js';
import type { Services } from '../services/index.js';
import { adminRoutes } from './admin.js';
import { apiKeyRoutes } from './apiKeys.js';
import { authRoutes } from './auth.js';
import { jobRoutes } from './jobs.js';
import { scheduleRoutes } from './schedules.js';
import { userRoutes } from './users.js';
import { webhookRoutes } from './webhooks.js';

/** Every /v1 route. Health, metrics and docs live outside the version prefix. */
export async function v1Routes(
  app: FastifyInstance,
  options: { services: Services; guards: AuthGuards; realtime: RealtimeMetrics; sessions: LiveSessions },
): Promise<void> {
  // Only what the children need: passing `options` on would repeat its `prefix`.
  const deps = { services: options.services, guards: options.guards };
  await app.register(authRoutes, deps);
  await app.register(userRoutes, deps);
  await app.register(apiKeyRoutes, deps);
  await app.register(jobRoutes, { ...deps, realtime: options.realtime, sessions: options.sessions });
  await app.register(adminRoutes, deps);
  await app.register(webhookRoutes, deps);
  await app.register(scheduleRoutes, deps);
}
