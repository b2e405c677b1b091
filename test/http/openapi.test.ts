import { readFileSync } from 'node:fs';
import { validate } from '@readme/openapi-parser';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DOCUMENT_FILE, documentText, TYPES_FILE, typesFor } from '../../scripts/generate.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

type Document = {
  servers: { url: string }[];
  paths: Record<string, Record<string, { operationId?: string; responses: Record<string, unknown>; security?: unknown[] }>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
};

describe('the OpenAPI document', () => {
  let server: TestRuntime;
  let document: Document;

  beforeAll(async () => {
    server = await startTestRuntime();
    const response = await server.request({ method: 'GET', url: '/docs/openapi.json' });
    expect(response.statusCode).toBe(200);
    document = response.json<Document>();
  });
  afterAll(async () => server.close());

  it('is valid OpenAPI 3.1 for a standard validator', async () => {
    const result = await validate(structuredClone(document) as never);
    expect(result.valid ? [] : result.errors).toEqual([]);
  });

  it('passes the Redocly linter with no error and no warning', async () => {
    const config = await createConfig({ extends: ['recommended'] });
    const problems = await lintFromString({ source: JSON.stringify(document), absoluteRef: 'openapi.json', config });
    expect(problems.map((problem) => `${problem.severity} ${problem.ruleId}: ${problem.message} at ${problem.location[0]?.pointer}`)).toEqual([]);
  });

  it('names every operation, describes its errors and defines the schemas it references', () => {
    const operationIds = new Set<string>();
    for (const [path, item] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        expect(operation.operationId, `${method} ${path}`).toMatch(/^[a-z][A-Za-z]+$/);
        expect(operationIds.has(operation.operationId!), `${operation.operationId} is unique`).toBe(false);
        operationIds.add(operation.operationId!);
        expect(Object.keys(operation.responses), `${method} ${path}`).toEqual(expect.arrayContaining(['429', 'default']));
        if (path.includes('{')) expect(Object.keys(operation.responses)).toContain('404');
      }
    }
    expect(operationIds.size).toBeGreaterThanOrEqual(45);
    for (const name of ['Session', 'User', 'ApiKey', 'Job', 'JobEvent', 'JobSubmission', 'Queue', 'WebhookEndpoint', 'WebhookDelivery', 'WebhookDeliveryDetail', 'Schedule', 'Problem']) {
      const present = name in document.components.schemas || `${name}Input` in document.components.schemas;
      expect(present, name).toBe(true);
    }
    const refs = JSON.stringify(document).match(/#\/components\/schemas\/[A-Za-z]+/g) ?? [];
    for (const ref of refs) expect(document.components.schemas, ref).toHaveProperty(ref.split('/').pop()!);
    expect(document.paths['/v1/auth/login']?.post?.security).toEqual([]);
    expect(document.servers[0]?.url).toBe('/');
  });

  it('matches the committed copy and the generated client types (run `npm run generate` when this fails)', async () => {
    expect(readFileSync(DOCUMENT_FILE, 'utf8')).toBe(documentText(document));
    expect(readFileSync(TYPES_FILE, 'utf8')).toBe(await typesFor(document));
  });
});
