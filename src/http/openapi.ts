import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';

/**
 * The OpenAPI 3.1 document, generated from the zod schemas that validate each route, served at
 * /docs/openapi.json (with Swagger UI at /docs). On top of what the routes declare, every operation
 * gets the problem+json answers it can give, so generated clients know the error shape.
 */

type Json = Record<string, unknown>;

const PROBLEM_SCHEMA: Json = {
  type: 'object',
  description: 'RFC 9457 problem details. `code` is stable: branch on it, not on `detail`.',
  properties: {
    type: { type: 'string', examples: ['urn:jobline:problem:JOBLINE_JOB_NOT_FOUND'] },
    title: { type: 'string', examples: ['Not Found'] },
    status: { type: 'integer', examples: [404] },
    detail: { type: 'string', examples: ['No job 0195d3c4-5b6a-7c8d-9e0f-123456789abc.'] },
    code: { type: 'string', description: 'A stable error code; see docs/errors.md.', examples: ['JOBLINE_JOB_NOT_FOUND'] },
    instance: { type: 'string' },
    requestId: { type: 'string' },
    errors: {
      type: 'array',
      description: 'Field-level problems of a validation error.',
      items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } }, required: ['path', 'message'] },
    },
  },
  required: ['type', 'title', 'status', 'detail', 'code'],
  additionalProperties: true,
};

function problemResponse(description: string, status: number, code: string, detail: string): Json {
  return {
    description,
    content: {
      'application/problem+json': {
        schema: { $ref: '#/components/schemas/Problem' },
        example: { type: `urn:jobline:problem:${code}`, title: description, status, detail, code },
      },
    },
  };
}

const PROBLEM_RESPONSES: Record<string, Json> = {
  BadRequest: problemResponse('Bad Request', 400, 'JOBLINE_VALIDATION_FAILED', 'body/type: Required'),
  Unauthorized: problemResponse('Unauthorized', 401, 'JOBLINE_UNAUTHENTICATED', 'Send an access token or an API key as a Bearer token.'),
  Forbidden: problemResponse('Forbidden', 403, 'JOBLINE_FORBIDDEN', 'This needs the admin role.'),
  NotFound: problemResponse('Not Found', 404, 'JOBLINE_NOT_FOUND', 'No such resource.'),
  TooManyRequests: problemResponse('Too Many Requests', 429, 'JOBLINE_RATE_LIMITED', 'Too many requests; retry after the Retry-After header.'),
  Error: problemResponse('Any other error (5xx details are logged, never sent)', 500, 'JOBLINE_INTERNAL', 'Something went wrong.'),
};

const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

/** Adds the error answers each operation can give, by what it takes: a body or parameters, credentials, an id. */
function describeErrors(path: string, operation: Json): void {
  const responses = (operation.responses ?? {}) as Json;
  const ref = (name: string) => ({ $ref: `#/components/responses/${name}` });
  const security = operation.security as unknown[] | undefined;
  if (operation.requestBody !== undefined || (operation.parameters as unknown[] | undefined)?.length) responses['400'] ??= ref('BadRequest');
  if (security === undefined || security.length > 0) {
    responses['401'] ??= ref('Unauthorized');
    responses['403'] ??= ref('Forbidden');
  }
  if (path.includes('{')) responses['404'] ??= ref('NotFound');
  responses['429'] ??= ref('TooManyRequests');
  responses.default ??= ref('Error');
  operation.responses = responses;
}

/** The finished document: components from the zod registry, error answers, servers, license. */
export function finishDocument(document: Json): Json {
  const components = (document.components ?? {}) as Json;
  components.schemas = { ...(components.schemas as Json | undefined), Problem: PROBLEM_SCHEMA };
  components.responses = { ...(components.responses as Json | undefined), ...PROBLEM_RESPONSES };
  const paths = (document.paths ?? {}) as Record<string, Json>;
  for (const [path, item] of Object.entries(paths)) {
    for (const method of METHODS) {
      const operation = item[method] as Json | undefined;
      if (operation) describeErrors(path, operation);
    }
  }
  components.schemas = usedSchemas(paths, components.schemas as Json);
  return { ...document, components };
}

/**
 * The registry holds an input and an output form of every named schema; only the forms some
 * operation reaches (directly or through another schema) belong in the document.
 */
function usedSchemas(paths: Json, schemas: Json): Json {
  const used = new Set<string>();
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(visit);
    if (value === null || typeof value !== 'object') return;
    for (const [key, inner] of Object.entries(value)) {
      const name = key === '$ref' && typeof inner === 'string' ? /^#\/components\/schemas\/(.+)$/.exec(inner)?.[1] : undefined;
      if (name !== undefined && !used.has(name)) {
        used.add(name);
        visit(schemas[name]);
      } else visit(inner);
    }
  };
  visit(paths);
  visit(PROBLEM_RESPONSES);
  return Object.fromEntries(Object.entries(schemas).filter(([name]) => used.has(name)));
}

export async function registerApiDocs(app: FastifyInstance, options: { publicUrl: string | null }): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Jobline API',
        version: '1',
        description:
          'Submit jobs, follow them live, receive signed webhooks, schedule with cron. Every error is ' +
          'application/problem+json (RFC 9457) with a stable `code`.',
        license: { name: 'MIT', identifier: 'MIT' },
      },
      servers: [{ url: options.publicUrl ?? '/', description: 'This Jobline server' }],
      security: [{ bearerAuth: [] }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'An access token from /v1/auth/login, or an API key (jl_…).' },
        },
      },
    },
    transform: jsonSchemaTransform,
    transformObject: (input) => finishDocument(jsonSchemaTransformObject(input) as Json),
  });
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true, uiConfig: { deepLinking: true } });
  app.get('/docs/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
