import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HandlerLoadError, HandlerRegistry, loadHandlersDir } from '../../src/workers/registry.js';
import type { HandlerContext } from '../../src/workers/types.js';
import { Client } from '../conformance/harness.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/** Temp folders written by this file, removed at the end. */
const tempDirs: string[] = [];

/** A fresh folder holding `files` (name → source text). Fresh each time: Node caches imported modules by path. */
function handlersDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'jobline-handlers-'));
  tempDirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** The HandlerLoadError loading `dir` fails with. */
async function loadError(dir: string): Promise<HandlerLoadError> {
  try {
    await loadHandlersDir(new HandlerRegistry(), dir);
  } catch (error) {
    if (error instanceof HandlerLoadError) return error;
    throw error;
  }
  throw new Error(`${dir} loaded without an error`);
}

function stubContext(payload: unknown): HandlerContext {
  return {
    job: { id: 'job-1', type: 't', queue: 'q', payload, attemptsMade: 0, maxAttempts: 3, tags: [], ownerId: 'owner', createdAt: new Date(0).toISOString() },
    payload,
    attempt: 1,
    signal: new AbortController().signal,
    progress: () => undefined,
    delta: () => undefined,
    log: () => undefined,
  };
}

describe('loadHandlersDir', () => {
  it('loads every .js, .mjs and .cjs handler with its queue and concurrency, in file-name order', async () => {
    const dir = handlersDir({
      'b-resize.mjs': `export default { type: 'resize', queue: 'images', concurrency: 4, run: (ctx) => ({ doubled: ctx.payload.n * 2 }) };`,
      'a-plain.mjs': `export default { type: 'plain', async run() { return 'ok'; } };`,
      'c-esm.js': `export default { type: 'esm-js', run: () => 'js' };`,
      'd-common.cjs': `module.exports = { type: 'common', concurrency: 1, run: () => 'cjs' };`,
    });
    const registry = new HandlerRegistry();
    const loaded = await loadHandlersDir(registry, dir);

    expect(loaded.map((handler) => handler.type)).toEqual(['plain', 'resize', 'esm-js', 'common']);
    expect(registry.get('resize')).toMatchObject({ type: 'resize', queue: 'images', concurrency: 4, source: path.join(dir, 'b-resize.mjs') });
    // No queue or concurrency: the defaults.
    expect(registry.get('plain')).toMatchObject({ queue: 'default', concurrency: 10, source: path.join(dir, 'a-plain.mjs') });
    expect(registry.get('common')).toMatchObject({ queue: 'default', concurrency: 1 });
    expect(await registry.get('resize')?.run(stubContext({ n: 21 }))).toEqual({ doubled: 42 });
    expect(await registry.get('plain')?.run(stubContext(null))).toBe('ok');
    expect(registry.get('resize')?.queue).toBe('images');
  });

  it('ignores files with other extensions and sub-folders', async () => {
    const dir = handlersDir({
      'real.mjs': `export default { type: 'real', run: () => null };`,
      // Each of these would fail to load, or register a duplicate, if it were imported.
      'typed.ts': `export default { type: 'real', run: (ctx: unknown) => ctx };`,
      'notes.txt': 'not code at all {',
      'README.md': '# handlers',
      'data.json': '{"type": "real"}',
      'old.mjs.bak': 'syntax error here (',
    });
    mkdirSync(path.join(dir, 'lib'));
    writeFileSync(path.join(dir, 'lib', 'nested.mjs'), `export default { type: 'nested', run: () => null };`);

    const registry = new HandlerRegistry();
    const loaded = await loadHandlersDir(registry, dir);
    expect(loaded.map((handler) => handler.type)).toEqual(['real']);
    expect(registry.types()).toEqual(['real']);
  });

  it('refuses a module without a default export, naming the file', async () => {
    const dir = handlersDir({ 'named.mjs': `export const handler = { type: 'named', run: () => null };` });
    const error = await loadError(dir);
    expect(error.message).toContain(path.join(dir, 'named.mjs'));
    expect(error.message).toMatch(/exports no handler object/);
  });

  it.each([
    ['missing', `{ run: () => null }`],
    ['empty', `{ type: '', run: () => null }`],
    ['with a space', `{ type: 'send email', run: () => null }`],
    ['a number', `{ type: 42, run: () => null }`],
    ['too long', `{ type: '${'t'.repeat(201)}', run: () => null }`],
  ])('refuses a type that is %s, naming the file', async (_case, handler) => {
    const dir = handlersDir({ 'bad-type.mjs': `export default ${handler};` });
    const error = await loadError(dir);
    expect(error.message).toContain(path.join(dir, 'bad-type.mjs'));
    expect(error.message).toMatch(/'type' must be/);
  });

  it.each([
    ['missing', `{ type: 'no-run' }`],
    ['a string', `{ type: 'no-run', run: 'handle' }`],
    ['an object', `{ type: 'no-run', run: { call() {} } }`],
  ])('refuses a run that is %s, naming the file', async (_case, handler) => {
    const dir = handlersDir({ 'no-run.mjs': `export default ${handler};` });
    const error = await loadError(dir);
    expect(error.message).toContain(path.join(dir, 'no-run.mjs'));
    expect(error.message).toMatch(/'run' must be a function/);
  });

  it.each([['0'], ['1.5'], ['-2'], ['1001'], ["'4'"]])('refuses concurrency %s, naming the file', async (concurrency) => {
    const dir = handlersDir({ 'busy.mjs': `export default { type: 'busy', concurrency: ${concurrency}, run: () => null };` });
    const error = await loadError(dir);
    expect(error.message).toContain(path.join(dir, 'busy.mjs'));
    expect(error.message).toMatch(/'concurrency' must be a whole number from 1 to 1000/);
  });

  it('refuses a queue name that is not a queue name, naming the file', async () => {
    const dir = handlersDir({ 'queue.mjs': `export default { type: 'queued', queue: 'my queue', run: () => null };` });
    const error = await loadError(dir);
    expect(error.message).toContain(path.join(dir, 'queue.mjs'));
    expect(error.message).toMatch(/'queue' must be/);
  });

  it('reports a syntax error with the file it is in', async () => {
    const dir = handlersDir({
      'a-fine.mjs': `export default { type: 'fine', run: () => null };`,
      'b-broken.mjs': `export default { type: 'broken', run: () => { return ( };`,
    });
    const error = await loadError(dir);
    expect(error.message).toContain(path.join(dir, 'b-broken.mjs'));
    expect(error.message).toMatch(/failed to load/);
  });

  it('reports an Error a module throws while loading, with the file', async () => {
    const dir = handlersDir({ 'throws.mjs': `throw new Error('missing API_TOKEN');\nexport default { type: 'throws', run: () => null };` });
    const error = await loadError(dir);
    expect(error.message).toContain(path.join(dir, 'throws.mjs'));
    expect(error.message).toContain('missing API_TOKEN');
  });

  it('reports a non-Error a module throws while loading, with what it threw', async () => {
    const dir = handlersDir({ 'throws-string.mjs': `throw 'set API_TOKEN first';\nexport default { type: 'x', run: () => null };` });
    const error = await loadError(dir);
    expect(error.message).toContain(path.join(dir, 'throws-string.mjs'));
    expect(error.message).toContain('set API_TOKEN first');
  });

  it('refuses the same type in two files, naming both', async () => {
    const dir = handlersDir({
      'first.mjs': `export default { type: 'report', run: () => 1 };`,
      'second.mjs': `export default { type: 'report', queue: 'other', run: () => 2 };`,
    });
    const error = await loadError(dir);
    expect(error.message).toContain(path.join(dir, 'first.mjs'));
    expect(error.message).toContain(path.join(dir, 'second.mjs'));
    expect(error.message).toMatch(/'report' is already registered/);
  });

  it('refuses a file that takes a built-in type', async () => {
    const registry = new HandlerRegistry();
    registry.register({ type: 'http', run: () => null }, 'built-in');
    const dir = handlersDir({ 'http.mjs': `export default { type: 'http', run: () => null };` });
    await expect(loadHandlersDir(registry, dir)).rejects.toThrow(/http\.mjs: job type 'http' is already registered by built-in/);
  });

  it('names JOBLINE_HANDLERS_DIR when the folder is missing or is a file', async () => {
    const missing = path.join(tmpdir(), `jobline-no-such-dir-${process.pid}-${Date.now()}`);
    const absent = await loadError(missing);
    expect(absent.message).toContain('JOBLINE_HANDLERS_DIR');
    expect(absent.message).toContain(missing);

    const file = path.join(handlersDir({ 'handler.mjs': 'export default {};' }), 'handler.mjs');
    const notDir = await loadError(file);
    expect(notDir.message).toContain('JOBLINE_HANDLERS_DIR');
    expect(notDir.message).toContain(file);
  });
});

describe('handlers from JOBLINE_HANDLERS_DIR, end to end', () => {
  let server: TestRuntime;
  let client: Client;

  beforeAll(async () => {
    const dir = handlersDir({
      'inspect.mjs': `
        export default {
          type: 'inspect',
          queue: 'files',
          concurrency: 2,
          async run(ctx) {
            ctx.progress(50);
            ctx.log('inspected');
            return { payload: ctx.payload, attempt: ctx.attempt, jobId: ctx.job.id, jobType: ctx.job.type, aborted: ctx.signal.aborted };
          },
        };`,
      'second-time.mjs': `
        export default {
          type: 'second-time',
          run(ctx) {
            if (ctx.attempt < 2) throw new Error('first attempt fails');
            return { attempt: ctx.attempt };
          },
        };`,
      // Plain JavaScript: not our NonRetriableError class, only its name.
      'give-up.mjs': `
        export default {
          type: 'give-up',
          run() {
            const error = new Error('the input cannot work');
            error.name = 'NonRetriableError';
            error.code = 'BAD_INPUT';
            throw error;
          },
        };`,
      'notes.md': 'ignored',
    });
    server = await startTestRuntime({ env: { JOBLINE_HANDLERS_DIR: dir } });
    client = new Client(server, (await server.login()).accessToken);
  });
  afterAll(async () => server.close());

  it('runs a job of a loaded type, on the handler’s queue, to its result', async () => {
    const submitted = await client.server.request({
      method: 'POST',
      url: '/v1/jobs',
      token: client.token,
      body: { type: 'inspect', payload: { file: 'a.png', size: 3 } },
    });
    expect(submitted.statusCode).toBe(201);
    const job = submitted.json<{ id: string; queue: string }>();
    expect(job.queue).toBe('files');

    const done = await client.waitFor(job.id);
    expect(done.state).toBe('completed');
    expect(done.result).toEqual({ payload: { file: 'a.png', size: 3 }, attempt: 1, jobId: job.id, jobType: 'inspect', aborted: false });
    expect(done.progress).toBe(50);
    const events = await client.events(job.id);
    expect(events.map((event) => event.type)).toEqual(['job.created', 'job.active', 'job.progress', 'job.log', 'job.completed']);
    expect(events.find((event) => event.type === 'job.log')?.data).toEqual({ message: 'inspected' });
  });

  it('tells the handler which attempt it is', async () => {
    const job = await client.submit({ type: 'second-time', attempts: 3, backoff: { type: 'fixed', delay: 10 } });
    const done = await client.waitFor(job.id);
    expect(done).toMatchObject({ state: 'completed', attemptsMade: 2, result: { attempt: 2 } });
  });

  it('fails at once on an Error named NonRetriableError from plain JavaScript', async () => {
    const job = await client.submit({ type: 'give-up', attempts: 5, backoff: { type: 'fixed', delay: 10 } });
    const done = await client.waitFor(job.id);
    expect(done).toMatchObject({ state: 'failed', attemptsMade: 1, error: { message: 'the input cannot work', code: 'BAD_INPUT' } });
    expect((await client.events(job.id)).map((event) => event.type)).not.toContain('job.retrying');
  });

  it('answers 400 for a type no file or built-in provides', async () => {
    const response = await client.post('/v1/jobs', { type: 'notes' });
    expect(response.statusCode).toBe(400);
    const problem = response.json<{ code: string; knownTypes: string[] }>();
    expect(problem.code).toBe('JOBLINE_UNKNOWN_JOB_TYPE');
    expect(problem.knownTypes).toEqual(expect.arrayContaining(['give-up', 'http', 'inspect', 'second-time']));
  });
});

describe('a server with a bad JOBLINE_HANDLERS_DIR', () => {
  it('refuses to start, naming the file at fault', async () => {
    const dir = handlersDir({ 'broken.mjs': `export default { type: 'broken' };` });
    const dataDir = mkdtempSync(path.join(tmpdir(), 'jobline-test-'));
    tempDirs.push(dataDir);
    await expect(startTestRuntime({ dataDir, env: { JOBLINE_HANDLERS_DIR: dir } })).rejects.toThrow(
      `${path.join(dir, 'broken.mjs')}: 'run' must be a function`,
    );
  });

  it('refuses to start when the folder does not exist', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'jobline-test-'));
    tempDirs.push(dataDir);
    const missing = path.join(dataDir, 'handlers');
    await expect(startTestRuntime({ dataDir, env: { JOBLINE_HANDLERS_DIR: missing } })).rejects.toThrow(/JOBLINE_HANDLERS_DIR: cannot read/);
  });
});
