import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Metrics } from '../config/metrics.js';
import { errors, toError } from '../utils/errors.js';
import type { ReadinessCheck } from '../utils/readiness.js';


const READINESS_TIMEOUT_MS = 2000;

export async function healthRoutes(
  app: FastifyInstance,
  options: { metrics: Metrics; readiness: readonly ReadinessCheck[] },
): Promise<void> {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const exempt = { rateLimit: false } as const;

  routes.get(
    '/health/live',
    {
      config: exempt,
      schema: { tags: ['health'], summary: 'The process is up', response: { 200: z.object({ status: z.literal('ok') }) } },
    },
    async () => ({ status: 'ok' as const }),
  );

  routes.get(
    '/health/ready',
    {
      config: exempt,
      schema: {
        tags: ['health'],
        summary: 'Every dependency answers (503 problem+json naming the failing ones otherwise)',
        response: { 200: z.object({ status: z.literal('ok'), checks: z.record(z.string(), z.string()) }) },
      },
    },
    async () => {
      const results = await Promise.all(
        options.readiness.map(async (dependency) => {
          try {
            await withTimeout(dependency.check(), READINESS_TIMEOUT_MS);
            return [dependency.name, 'ok'] as const;
          } catch (error) {
            return [dependency.name, toError(error).message] as const;
          }
        }),
      );
      const checks = Object.fromEntries(results);
      if (results.some(([, outcome]) => outcome !== 'ok')) throw errors.notReady(checks);
      return { status: 'ok' as const, checks };
    },
  );

  routes.get('/metrics', { config: exempt, schema: { tags: ['health'], summary: 'Prometheus metrics' } }, async (_request, reply) => {
    const { contentType, body } = await options.metrics.render();
    return reply.type(contentType).send(body);
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(toError(error));
      },
    );
  });
}
