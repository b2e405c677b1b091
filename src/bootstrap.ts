import closeWithGrace from 'close-with-grace';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './config/app.js';
import { createDatabase, migrateToLatest, type DatabaseHandle } from './config/database.js';
import type { Config } from './config/env.js';
import { createMetrics } from './config/metrics.js';
import { loadJwtSecret } from './config/secrets.js';
import type { ReadinessCheck } from './routes/health.js';
import { ensureFirstAdmin } from './services/firstAdmin.js';
import { createServices, type Services } from './services/index.js';
import { systemClock, type Clock } from './utils/clock.js';
import { MemoryCounterStore } from './utils/counterStore.js';
import { toError } from './utils/errors.js';
import { createLogger } from './utils/logger.js';
import { createMailer, type Mailer } from './utils/mailer.js';

/**
 * Composes the server: config → database → services → HTTP. The one place that chooses
 * concrete implementations (database dialect, counter store, mailer; later the engine).
 */

export interface Runtime {
  readonly config: Config;
  readonly logger: Logger;
  readonly database: DatabaseHandle;
  readonly services: Services;
  readonly app: FastifyInstance;
  /** Closes the HTTP server and the database. Safe to call more than once. */
  close(): Promise<void>;
}

export interface RuntimeOverrides {
  logger?: Logger;
  clock?: Clock;
  mailer?: Mailer;
}

export async function createRuntime(config: Config, overrides: RuntimeOverrides = {}): Promise<Runtime> {
  const logger = overrides.logger ?? createLogger({ level: config.logLevel });
  const clock = overrides.clock ?? systemClock;
  const database = createDatabase(config.database);
  try {
    const applied = await migrateToLatest(database.db);
    if (applied.length > 0) logger.info({ migrations: applied }, 'database migrated');
    const services = createServices({
      db: database.db,
      clock,
      logger,
      mailer: overrides.mailer ?? createMailer({ smtpUrl: config.smtpUrl, from: config.mailFrom, logger }),
      counters: new MemoryCounterStore(() => clock.now()),
      auth: {
        jwtSecret: loadJwtSecret(config),
        accessTokenTtlMs: config.accessTokenTtlMs,
        refreshTokenTtlMs: config.refreshTokenTtlMs,
        openRegistration: config.openRegistration,
        publicUrl: config.publicUrl,
      },
    });
    await ensureFirstAdmin(services.users, { email: config.adminEmail, password: config.adminPassword }, logger);
    const readiness: ReadinessCheck[] = [{ name: 'database', check: () => database.ping() }];
    const app = await buildApp({
      config,
      logger,
      services,
      metrics: createMetrics(),
      readiness,
      serveApi: config.role === 'api' || config.role === 'all',
    });
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        await app.close();
        await database.close();
      })();
      return closing;
    };
    return { config, logger, database, services, app, close };
  } catch (error) {
    await database.close().catch(() => undefined);
    throw error;
  }
}

/** Starts listening and closes gracefully on SIGTERM/SIGINT. Resolves with the address served. */
export async function startServer(config: Config): Promise<{ runtime: Runtime; address: string }> {
  const runtime = await createRuntime(config);
  const { logger } = runtime;
  closeWithGrace({ delay: config.shutdownGraceMs + 10_000, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err: toError(err) }, 'shutting down after an error');
    else logger.info({ signal }, 'shutting down');
    await runtime.close();
    logger.info('shut down cleanly');
  });
  const address = await runtime.app.listen({ port: config.port, host: config.host });
  const port = new URL(address).port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  logger.info({ mode: config.mode, role: config.role }, `listening on http://${shownHost}:${port}`);
  return { runtime, address };
}
