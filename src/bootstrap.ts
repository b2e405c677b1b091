import { hostname } from 'node:os';
import closeWithGrace from 'close-with-grace';
import type { FastifyInstance } from 'fastify';
import type { Server as SocketServer } from 'socket.io';
import type { Logger } from 'pino';
import { buildApp } from './http/app.js';
import { createDatabase, migrateToLatest, type DatabaseHandle } from './config/database.js';
import { ConfigError, type Config } from './config/env.js';
import { createMetrics, type Metrics } from './config/metrics.js';
import { loadJwtSecret } from './config/secrets.js';
import { createRedisConnection, rateLimitStore } from './config/redis.js';
import { createRedisRuntime, type RedisRuntime } from './redisRuntime.js';
import { BullMqEngine } from './engine/bullmq/engine.js';
import { EmbeddedEngine } from './engine/embedded/index.js';
import type { Engine } from './engine/types.js';
import { JobEventHub } from './events/hub.js';
import { LiveSessions } from './realtime/sessions.js';
import { LocalEventBus, type EventBus } from './events/index.js';
import { attachSocketEvents } from './realtime/socketEvents.js';
import { createSocketServer } from './realtime/socketServer.js';
import type { ReadinessCheck } from './utils/readiness.js';
import { ensureFirstAdmin } from './services/firstAdmin.js';
import { createServices, type Services } from './services/index.js';
import { systemClock, type Clock } from './utils/clock.js';
import { MemoryCounterStore } from './utils/counterStore.js';
import { toError } from './utils/errors.js';
import { randomToken } from './utils/ids.js';
import { createLogger } from './utils/logger.js';
import { createMailer, type Mailer } from './utils/mailer.js';
import { createOutboundPolicy } from './utils/ssrfGuard.js';
import { registerBuiltInHandlers } from './workers/builtins.js';
import { Scheduler } from './scheduler/index.js';
import { WorkerPool } from './workers/pool.js';
import { HandlerRegistry, loadHandlersDir } from './workers/registry.js';
import { startWebhookDelivery } from './webhooks/delivery.js';
import { WEBHOOK_TIMEOUT_MS } from './webhooks/webhookWorker.js';

/**
 * Composes the server: config → database → engine → services → HTTP and workers. The one
 * place that chooses concrete implementations (database dialect, engine, counter store, mailer).
 */

export interface Runtime {
  readonly config: Config;
  readonly logger: Logger;
  readonly database: DatabaseHandle;
  readonly engine: Engine;
  readonly registry: HandlerRegistry;
  readonly services: Services;
  readonly metrics: Metrics;
  readonly app: FastifyInstance;
  readonly workers: WorkerPool | null;
  readonly scheduler: Scheduler | null;
  readonly bus: EventBus;
  readonly hub: JobEventHub;
  /** The Socket.IO server (roles api and all). */
  readonly io: SocketServer | null;
  /** Stops accepting requests and claiming jobs, lets running jobs finish within the grace period, closes. Idempotent. */
  close(): Promise<void>;
}

export interface RuntimeOverrides {
  logger?: Logger;
  clock?: Clock;
  mailer?: Mailer;
  /** Registers extra handlers (tests add theirs here) before the workers start. */
  registerHandlers?: (registry: HandlerRegistry) => void;
  /** Supplies the engine instead of choosing one from the configuration. */
  engine?: (deps: { clock: Clock; logger: Logger }) => Engine;
}

export async function createRuntime(config: Config, overrides: RuntimeOverrides = {}): Promise<Runtime> {
  const logger = overrides.logger ?? createLogger({ level: config.logLevel });
  const clock = overrides.clock ?? systemClock;
  const database = createDatabase(config.database);
  let engine: Engine | null = null;
  let redis: RedisRuntime | null = null;
  try {
    const applied = await migrateToLatest(database.db);
    if (applied.length > 0) logger.info({ migrations: applied }, 'database migrated');
    const registry = await createRegistry(config, overrides.registerHandlers);
    // Distributed mode: events, counters and rate limits are shared through Redis.
    redis = config.mode === 'distributed' ? await createRedisRuntime(config, logger, config.redisPrefix) : null;
    engine = overrides.engine ? overrides.engine({ clock, logger }) : createEngine(config, database, clock, logger);
    const bus: EventBus = redis?.bus ?? new LocalEventBus();
    // Engines announce events after their rows are committed; the bus carries them to live clients.
    engine.subscribe({ events: (events) => bus.publishJobEvents(events) });
    const hub = new JobEventHub(bus, (jobId, afterSeq, limit) => jobEngine.listEvents(jobId, afterSeq, limit));
    const jobEngine = engine;
    const outboundPolicy = createOutboundPolicy({ allow: config.outboundAllow });
    const services = createServices({
      db: database.db,
      clock,
      logger,
      mailer: overrides.mailer ?? createMailer({ smtpUrl: config.smtpUrl, from: config.mailFrom, logger }),
      counters: redis?.counters ?? new MemoryCounterStore(() => clock.now()),
      auth: {
        jwtSecret: loadJwtSecret(config),
        accessTokenTtlMs: config.accessTokenTtlMs,
        refreshTokenTtlMs: config.refreshTokenTtlMs,
        openRegistration: config.openRegistration,
        publicUrl: config.publicUrl,
      },
      engine,
      jobTypes: { defaultQueue: (type) => registry.get(type)?.queue, list: () => registry.types() },
      jobLimits: { maxPayloadBytes: config.maxPayloadBytes },
      notify: (message) => bus.publishControl(message),
      hub,
      outboundPolicy,
    });
    await ensureFirstAdmin(services.users, { email: config.adminEmail, password: config.adminPassword }, logger);
    const metrics = createMetrics();
    metrics.setQueueCounts(() => jobEngine.listQueues());
    metrics.setScheduleCount(() => services.scheduleStore.count());
    const readiness: ReadinessCheck[] = [{ name: 'database', check: () => database.ping() }];
    if (redis) readiness.push(redis.readiness);
    const serveApi = config.role === 'api' || config.role === 'all';
    // Live connections (sockets, event streams) end when their credentials stop working.
    const sessions = new LiveSessions(bus, (credential) => services.auth.authenticateToken(credential));
    const app = await buildApp({
      sessions,
      config,
      logger,
      services,
      metrics,
      readiness,
      serveApi,
      rateLimitStore: redis ? rateLimitStore(redis.commands, config.redisPrefix) : null,
    });
    const io = serveApi ? createSocketServer(app.server, { auth: services.auth, corsOrigins: config.corsOrigins }) : null;
    const detachSockets = io ? attachSocketEvents({ io, hub, sessions, jobs: services.jobs, metrics: metrics.realtime }) : () => undefined;
    await engine.start();
    const workers =
      config.role === 'worker' || config.role === 'all'
        ? new WorkerPool({ engine, registry, logger, metrics: metrics.jobs, workerId: workerId(), leaseMs: config.leaseMs })
        : null;
    workers?.start();
    const scheduler =
      config.role === 'scheduler' || config.role === 'all'
        ? new Scheduler({ store: services.scheduleStore, engine, jobs: services.jobs, clock, logger, metrics: metrics.scheduler })
        : null;
    if (scheduler) {
      services.schedules.onChange = () => scheduler.wake();
      scheduler.start();
    }
    if (workers) logger.info({ types: registry.types() }, 'workers started');
    // Webhooks are sent by the processes that run jobs; the API role only serves their routes.
    const webhookDelivery =
      config.role === 'worker' || config.role === 'all'
        ? await startWebhookDelivery({
            db: database.db,
            clock,
            logger,
            config,
            policy: outboundPolicy,
            metrics: metrics.webhooks,
            bus,
            webhooks: services.webhooks,
            singleProcess: !jobEngine.capabilities.multiProcess,
          })
        : null;

    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        detachSockets();
        io?.local.disconnectSockets(true);
        io?.engine.close();
        // Stop claiming and firing at once, while HTTP drains: running jobs get the grace period.
        const stopping = Promise.all([scheduler?.stop(), workers?.stop(config.shutdownGraceMs), webhookDelivery?.stop(Math.min(config.shutdownGraceMs, WEBHOOK_TIMEOUT_MS))]);
        // Connections that stay open after the answers are sent (keep-alive) must not hold the exit.
        const forceClose = setTimeout(() => app.server.closeAllConnections(), 5000);
        forceClose.unref();
        // Even when a part fails to stop (releasing jobs with the database away), every connection is closed.
        let failure: unknown;
        const attempt = async (step: () => unknown) => {
          try {
            await step();
          } catch (error) {
            failure ??= error;
          }
        };
        await attempt(() => Promise.all([app.close(), stopping]));
        clearTimeout(forceClose);
        for (const step of [() => jobEngine.stop(), () => hub.close(), () => sessions.close(), () => bus.close(), () => redis?.close(), () => database.close()]) await attempt(step);
        if (failure !== undefined) throw failure;
      })();
      return closing;
    };
    return { config, logger, database, engine, registry, services, metrics, app, workers, scheduler, bus, hub, io, close };
  } catch (error) {
    await engine?.stop().catch(() => undefined);
    await redis?.close().catch(() => undefined);
    await database.close().catch(() => undefined);
    throw error;
  }
}

async function createRegistry(config: Config, registerExtra: RuntimeOverrides['registerHandlers']): Promise<HandlerRegistry> {
  const registry = new HandlerRegistry();
  registerBuiltInHandlers(registry, config);
  if (config.handlersDir) await loadHandlersDir(registry, config.handlersDir);
  registerExtra?.(registry);
  return registry;
}

function createEngine(config: Config, database: DatabaseHandle, clock: Clock, logger: Logger): Engine {
  const retention = { completedMs: config.retentionCompletedMs, failedMs: config.retentionFailedMs };
  if (config.mode === 'distributed') {
    const connect = (purpose: 'commands' | 'bullmq', name: string) => createRedisConnection(config, { purpose, name, logger });
    return new BullMqEngine({
      db: database.db,
      clock,
      logger,
      retention,
      prefix: config.redisPrefix,
      redis: { bull: connect('bullmq', 'bullmq'), commands: connect('commands', 'engine'), subscriber: connect('commands', 'engine-signals') },
      maxCrashes: config.maxCrashes,
      sweepIntervalMs: config.sweepIntervalMs,
    });
  }
  if (database.sqlite === null) {
    throw new ConfigError([
      'JOBLINE_DATABASE_URL: jobs on PostgreSQL are dispatched through BullMQ; set JOBLINE_REDIS_URL too (distributed mode), or use the embedded SQLite database',
    ]);
  }
  return new EmbeddedEngine({
    sqlite: database.sqlite,
    db: database.db,
    clock,
    logger,
    maxCrashes: config.maxCrashes,
    sweepIntervalMs: config.sweepIntervalMs,
    retention,
  });
}

function workerId(): string {
  return `${hostname()}:${process.pid}:${randomToken(4)}`;
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
  // Logged whatever the level: with JOBLINE_PORT=0 this line is how a caller learns the port.
  logger.child({}, { level: 'info' }).info({ mode: config.mode, role: config.role }, `listening on http://${shownHost}:${port}`);
  return { runtime, address };
}
