import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerProbeHandlers } from '../conformance/harness.js';
import { ADMIN_EMAIL, ADMIN_PASSWORD, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { launchChromium } from '../helpers/browser.js';

/**
 * jobline/client bundled for the browser (esbuild, platform "browser": a Node import would fail
 * the build) and run in headless Chromium against a real server that serves the page itself.
 */

const PAGE_SCRIPT = `
import { createClient, JoblineError } from '/test/client.js';
const out = document.getElementById('out');
try {
  const jobline = createClient({ baseUrl: '' });
  await jobline.login(${JSON.stringify(ADMIN_EMAIL)}, ${JSON.stringify(ADMIN_PASSWORD)});
  const { job, created } = await jobline.jobs.submit({ type: 'chatty', payload: { count: 12 } });
  const chunks = [];
  let last = null;
  for await (const event of jobline.jobs.follow(job.id)) {
    if (event.type === 'job.delta') chunks.push(event.data.chunk);
    last = event.type;
  }
  const missing = await jobline.jobs.get('0195d3c4-5b6a-7c8d-9e0f-123456789abc').catch((error) => error);
  out.textContent = JSON.stringify({ created, idempotencyKey: job.idempotencyKey, chunks: chunks.length, last,
    errorCode: missing instanceof JoblineError ? missing.code : String(missing) });
} catch (error) {
  out.textContent = JSON.stringify({ failed: String(error) });
}
`;

describe('jobline/client in a browser', () => {
  let server: TestRuntime;
  let baseUrl: string;
  let browser: Browser;

  beforeAll(async () => {
    const bundle = await build({ entryPoints: ['src/client/index.ts'], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false });
    const clientJs = bundle.outputFiles[0]!.text;
    server = await startTestRuntime({ handlers: registerProbeHandlers });
    const { app } = server.runtime;
    app.get('/test/client.js', (_request, reply) => reply.type('text/javascript').send(clientJs));
    app.get('/test/run.js', (_request, reply) => reply.type('text/javascript').send(PAGE_SCRIPT));
    app.get('/test/page', (_request, reply) =>
      reply.type('text/html').send('<!doctype html><title>client</title><pre id="out">running</pre><script type="module" src="/test/run.js"></script>'),
    );
    baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('logs in, submits, follows live output and reports typed errors', async () => {
    const page = await browser.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    await page.goto(`${baseUrl}/test/page`);
    await expect.poll(() => page.textContent('#out'), { timeout: 20_000 }).not.toBe('running');
    const outcome = JSON.parse((await page.textContent('#out'))!) as Record<string, unknown>;
    expect(outcome).toEqual({ created: true, idempotencyKey: expect.stringMatching(/^[0-9a-f-]{36}$/), chunks: 12, last: 'job.completed', errorCode: 'JOBLINE_JOB_NOT_FOUND' });
    // The 404 above is the only failed request the page made.
    expect(consoleErrors.filter((text) => !text.includes('404'))).toEqual([]);
  }, 60_000);
});
