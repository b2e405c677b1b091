import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { toError } from '../utils/errors.js';
import type { JobHandler } from './types.js';

export const DEFAULT_QUEUE = 'default';
export const DEFAULT_CONCURRENCY = 10;
const TYPE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/;
export const QUEUE_PATTERN = TYPE_PATTERN;
const HANDLER_EXTENSIONS = new Set(['.js', '.mjs', '.cjs']);

export interface RegisteredHandler {
  type: string;
  queue: string;
  concurrency: number;
  run: JobHandler['run'];
  /** Where it came from: a file path or "built-in". */
  source: string;
}

export class HandlerLoadError extends Error {
  override readonly name = 'HandlerLoadError';
}

/** The job types this server knows, and how to run each. */
export class HandlerRegistry {
  private readonly handlers = new Map<string, RegisteredHandler>();

  register(candidate: unknown, source: string): RegisteredHandler {
    const handler = validateHandler(candidate, source);
    const existing = this.handlers.get(handler.type);
    if (existing) {
      throw new HandlerLoadError(`${source}: job type '${handler.type}' is already registered by ${existing.source}.`);
    }
    this.handlers.set(handler.type, handler);
    return handler;
  }

  get(type: string): RegisteredHandler | undefined {
    return this.handlers.get(type);
  }

  types(): string[] {
    return [...this.handlers.keys()].sort();
  }
}

function validateHandler(candidate: unknown, source: string): RegisteredHandler {
  const fail = (problem: string): never => {
    throw new HandlerLoadError(`${source}: ${problem} (expected a default export { type, queue?, concurrency?, run(ctx) }).`);
  };
  if (typeof candidate !== 'object' || candidate === null) return fail('the module exports no handler object');
  const { type, queue, concurrency, run } = candidate as Record<string, unknown>;
  if (typeof type !== 'string' || !TYPE_PATTERN.test(type)) {
    return fail("'type' must be a string of letters, digits and _ . : - (up to 200)");
  }
  if (typeof run !== 'function') return fail("'run' must be a function");
  if (queue !== undefined && (typeof queue !== 'string' || !QUEUE_PATTERN.test(queue))) {
    return fail("'queue' must be a string of letters, digits and _ . : - (up to 200)");
  }
  if (concurrency !== undefined && (typeof concurrency !== 'number' || !Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000)) {
    return fail("'concurrency' must be a whole number from 1 to 1000");
  }
  return {
    type,
    queue: (queue as string | undefined) ?? DEFAULT_QUEUE,
    concurrency: (concurrency as number | undefined) ?? DEFAULT_CONCURRENCY,
    run: run as JobHandler['run'],
    source,
  };
}

/** Imports every .js/.mjs/.cjs module of a folder (sorted by name) into the registry. */
export async function loadHandlersDir(registry: HandlerRegistry, dir: string): Promise<RegisteredHandler[]> {
  let entries: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    entries = readdirSync(dir).sort();
  } catch (error) {
    throw new HandlerLoadError(`JOBLINE_HANDLERS_DIR: cannot read ${dir}: ${toError(error).message}`);
  }
  const loaded: RegisteredHandler[] = [];
  for (const entry of entries) {
    if (!HANDLER_EXTENSIONS.has(path.extname(entry))) continue;
    const file = path.join(dir, entry);
    let module: { default?: unknown };
    try {
      module = (await import(pathToFileURL(file).href)) as { default?: unknown };
    } catch (error) {
      throw new HandlerLoadError(`${file}: failed to load: ${toError(error).message}`);
    }
    loaded.push(registry.register(module.default, file));
  }
  return loaded;
}
