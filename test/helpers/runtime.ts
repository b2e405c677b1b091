import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { createRuntime, type Runtime, type RuntimeOverrides } from '../../src/bootstrap.js';
import { createDatabase, migrateToLatest } from '../../src/config/database.js';
import { loadConfig } from '../../src/config/env.js';
import { EmbeddedEngine } from '../../src/engine/embedded/index.js';
import type { HandlerRegistry } from '../../src/workers/registry.js';
import type { Clock } from '../../src/utils/clock.js';
import { createLogger } from '../../src/utils/logger.js';
import { createTestDatabase } from './postgres.js';

export const ADMIN_EMAIL = 'admin@example.com';
export const ADMIN_PASSWORD = 'admin-password-1';

export type DatabaseKind = 'sqlite' | 'postgres';

export interface TestRuntime {
  runtime: Runtime;
  /** Every log line the server wrote, parsed. */
  logs: Record<string, unknown>[];
  logText(): string;
  dataDir: string;
  request(options: InjectOptions): Promise<LightMyRequestResponse>;
  login(email?: string, password?: string): Promise<{ accessToken: string; refreshToken: string; userId: string }>;
  createUser(email: string, password: string, role?: 'admin' | 'user'): Promise<string>;
  close(): Promise<void>;
}

export interface InjectOptions {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  url: string;
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  remoteAddress?: string;
}

/** A real server (real SQLite file in a temp dir, or a fresh PostgreSQL database) driven through inject(). */
export async function startTestRuntime(
  options: {
    env?: Record<string, string>;
    clock?: Clock;
    database?: DatabaseKind;
    /** An existing PostgreSQL database to use (the caller creates and drops it), e.g. to restart on it. */
    postgresUrl?: string;
    handlers?: (registry: HandlerRegistry) => void;
    /** Reopen an existing data directory (a restart) instead of a fresh one. */
    dataDir?: string;
    /** Leave the data directory in place on close, to restart on it. */
    keepDataDir?: boolean;
  } = {},
): Promise<TestRuntime> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'jobline-test-'));
  const postgres = options.postgresUrl ? null : options.database === 'postgres' ? await createTestDatabase() : null;
  const postgresUrl = options.postgresUrl ?? postgres?.url;
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) },
  });
  const config = loadConfig({
    envFile: false,
    cwd: dataDir,
    env: {
      JOBLINE_DATA_DIR: dataDir,
      JOBLINE_ADMIN_EMAIL: ADMIN_EMAIL,
      JOBLINE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      ...(postgresUrl ? { JOBLINE_DATABASE_URL: postgresUrl } : {}),
      ...options.env,
    },
  });
  const overrides: RuntimeOverrides = { logger, ...(options.clock ? { clock: options.clock } : {}) };
  if (options.handlers) overrides.registerHandlers = options.handlers;
  // Jobs on PostgreSQL need Redis (distributed mode): account tests on PostgreSQL without it keep
  // jobs in a side SQLite file.
  const sideStore = postgresUrl && config.mode !== 'distributed' ? createDatabase({ kind: 'sqlite', file: path.join(dataDir, 'jobs.db') }) : null;
  if (sideStore) {
    await migrateToLatest(sideStore.db);
    overrides.engine = ({ clock, logger: engineLogger }) =>
      new EmbeddedEngine({ sqlite: sideStore.sqlite!, db: sideStore.db, clock, logger: engineLogger, retention: { completedMs: 1e12, failedMs: 1e12 } });
  }
  const runtime = await createRuntime(config, overrides);

  const request = (inject: InjectOptions) =>
    runtime.app.inject({
      method: inject.method,
      url: inject.url,
      ...(inject.body === undefined ? {} : { payload: inject.body as object }),
      remoteAddress: inject.remoteAddress ?? '127.0.0.1',
      headers: { ...(inject.token ? { authorization: `Bearer ${inject.token}` } : {}), ...inject.headers },
    });

  const login = async (email = ADMIN_EMAIL, password = ADMIN_PASSWORD) => {
    const response = await request({ method: 'POST', url: '/v1/auth/login', body: { email, password } });
    if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`);
    const body = response.json<{ accessToken: string; refreshToken: string; user: { id: string } }>();
    return { accessToken: body.accessToken, refreshToken: body.refreshToken, userId: body.user.id };
  };

  const createUser = async (email: string, password: string, role: 'admin' | 'user' = 'user') => {
    const user = await runtime.services.users.create({ email, password, role });
    return user.id;
  };

  return {
    runtime,
    logs,
    logText: () => logs.map((line) => JSON.stringify(line)).join('\n'),
    dataDir,
    request,
    login,
    createUser,
    close: async () => {
      await runtime.close();
      await sideStore?.close();
      await postgres?.drop();
      if (!options.keepDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The problem document of a response, checked to be problem+json. */
export function problemOf(response: LightMyRequestResponse): { status: number; code: string; detail: string; errors?: { path: string; message: string }[] } {
  const contentType = String(response.headers['content-type']);
  if (!contentType.startsWith('application/problem+json')) {
    throw new Error(`expected problem+json, got ${contentType}: ${response.body}`);
  }
  return response.json();
}
