import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { createAuthGuards } from '../middleware/auth.js';
import { frameworkErrorHandler, registerErrorHandling } from '../middleware/error.js';
import { registerRateLimit, type RateLimitStore } from '../middleware/rateLimit.js';
import { healthRoutes } from '../routes/health.js';
import type { ReadinessCheck } from '../utils/readiness.js';
import { v1Routes } from '../routes/index.js';
import type { LiveSessions } from '../realtime/sessions.js';
import type { Services } from '../services/index.js';
import { newId } from '../utils/ids.js';
import type { Config } from '../config/env.js';
import type { Metrics } from '../config/metrics.js';
import { registerApiDocs } from './openapi.js';

export interface AppDependencies {
  config: Config;
  logger: Logger;
  services: Services;
  metrics: Metrics;
  readiness: readonly ReadinessCheck[];
  /** Whether to serve the API (roles api and all) or only health and metrics. */
  serveApi: boolean;
  /** Ends event streams whose credentials stop working. */
  sessions: LiveSessions;
  /** Where the HTTP rate limit counts (Redis in distributed mode); in memory when absent. */
  rateLimitStore?: RateLimitStore | null;
}

const REQUEST_ID_PATTERN = /^[\w.:-]{1,64}$/;

/** Builds the HTTP application without listening: tests drive it with `app.inject()`. */
export async function buildApp(deps: AppDependencies): Promise<FastifyInstance> {
  const { config } = deps;
  // Typed as Fastify's logger so the instance keeps the default generics every plugin expects.
  const loggerInstance: FastifyBaseLogger = deps.logger;
  const app = Fastify({
    loggerInstance,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy,
    // Queue names may have 200 characters; path parameters must fit them.
    routerOptions: { maxParamLength: 256 },
    frameworkErrors: frameworkErrorHandler,
    // Reuse a caller's request id when it is sane, so one id follows a request across services.
    genReqId: (request) => {
      const incoming = request.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming) ? incoming : newId();
    },
    logController: new LogController({
      requestIdLogLabel: 'requestId',
      // Probes poll these every few seconds; logging each would drown the useful lines.
      disableRequestLogging: (request: { url?: string }) => /^\/(health|metrics)/.test(request.url ?? ''),
    }),
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // Only JSON bodies: anything else is 415, not a string that fails validation later.
  app.removeContentTypeParser(['text/plain']);
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    deps.metrics.httpRequestDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  registerErrorHandling(app, { bodyLimit: config.bodyLimit });

  await app.register(helmet, { global: true });
  if (config.corsOrigins.length > 0) {
    await app.register(cors, { origin: [...config.corsOrigins], credentials: false, exposedHeaders: ['x-request-id', 'retry-after', 'jobline-deduplicated'] });
  }
  await registerRateLimit(app, config.rateLimitPerMinute, { store: deps.rateLimitStore ?? null });
  await app.register(healthRoutes, { metrics: deps.metrics, readiness: deps.readiness });

  if (deps.serveApi) {
    await registerApiDocs(app, { publicUrl: config.publicUrl });
    await app.register(v1Routes, {
      prefix: '/v1',
      services: deps.services,
      guards: createAuthGuards(deps.services.auth),
      realtime: deps.metrics.realtime,
      sessions: deps.sessions,
    });
  }
  return app;
}
