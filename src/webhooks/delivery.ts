import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../config/env.js';
import type { WebhookMetrics } from '../config/metrics.js';
import type { Database } from '../db/schema.js';
import type { EventBus } from '../events/index.js';
import type { WebhookService } from './webhookService.js';
import type { Clock } from '../utils/clock.js';
import type { OutboundPolicy } from '../utils/ssrfGuard.js';
import { WebhookDispatcher } from './webhookDispatcher.js';
import { WebhookWorker } from './webhookWorker.js';

export interface WebhookDelivery {
  /** Stops dispatching and sending; sends still running after `graceMs` are abandoned (and retried later). */
  stop(graceMs: number): Promise<void>;
}

export interface WebhookDeliveryDeps {
  db: Kysely<Database>;
  clock: Clock;
  logger: Logger;
  config: Pick<Config, 'webhookRetryDelays' | 'webhookDisableAfterMs'>;
  policy: OutboundPolicy;
  metrics: WebhookMetrics;
  bus: EventBus;
  webhooks: WebhookService;
  /** No other process sends from this store (the embedded engine's `multiProcess` is false). */
  singleProcess: boolean;
}

/** Starts the outbox dispatcher and the sender, woken by committed job events and by API actions. */
export async function startWebhookDelivery(deps: WebhookDeliveryDeps): Promise<WebhookDelivery> {
  const logger = deps.logger.child({ component: 'webhooks' });
  const worker = new WebhookWorker({
    db: deps.db,
    clock: deps.clock,
    logger,
    policy: deps.policy,
    metrics: deps.metrics,
    retryDelays: deps.config.webhookRetryDelays,
    disableAfterMs: deps.config.webhookDisableAfterMs,
    releaseLocksAtStart: deps.singleProcess,
  });
  const dispatcher = new WebhookDispatcher({ db: deps.db, clock: deps.clock, logger, onDeliveries: () => worker.wake() });
  await worker.start();
  dispatcher.start();
  const detachBus = deps.bus.onJobEvents(() => dispatcher.wake());
  const detachService = deps.webhooks.onDeliveryScheduled(() => worker.wake());
  return {
    stop: async (graceMs) => {
      detachBus();
      detachService();
      await dispatcher.stop();
      await worker.stop(graceMs);
    },
  };
}
