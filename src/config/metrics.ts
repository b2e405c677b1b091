import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Process metrics (CPU, memory, event loop, GC) are process-wide: collected once per process. */
let processRegistry: Registry | undefined;
function sharedProcessRegistry(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'jobline_' });
  }
  return processRegistry;
}

/** What workers report about the jobs they run. */
export interface JobMetrics {
  /** An attempt ended: completed, failed (for good), retried (will run again), or discarded (lease lost). */
  attemptEnded(labels: { queue: string; type: string }, outcome: 'completed' | 'failed' | 'retried' | 'discarded', durationMs: number): void;
  /** An attempt started this long after the job was due. */
  attemptStarted(labels: { queue: string; type: string }, waitMs: number): void;
}

/** What the live transports (Socket.IO, SSE) report. */
export interface RealtimeMetrics {
  connected(delta: number): void;
  subscriptions(delta: number): void;
  sent(count: number, transport?: 'socketio' | 'sse'): void;
}

/** What the scheduler reports. */
export interface SchedulerMetrics {
  /** A schedule created its job `lagMs` after the fire time. */
  fired(lagMs: number): void;
  skipped(reason: 'overlap' | 'missed' | 'error', count: number): void;
}

/** What the webhook sender reports. */
export interface WebhookMetrics {
  /** An attempt ended: the delivery succeeded, failed for good, or will be retried. */
  attemptEnded(outcome: 'succeeded' | 'failed' | 'retried', durationMs: number): void;
}

export interface Metrics {
  readonly registry: Registry;
  readonly scheduler: SchedulerMetrics;
  /** Supplies the schedules gauge, read at each scrape. */
  setScheduleCount(read: () => Promise<number>): void;
  readonly realtime: RealtimeMetrics;
  readonly httpRequestDuration: Histogram<'method' | 'route' | 'status_code'>;
  readonly jobs: JobMetrics;
  readonly webhooks: WebhookMetrics;
  /** Supplies the jobs-by-queue-and-state gauge, read at each scrape. */
  setQueueCounts(read: () => Promise<{ name: string; counts: Record<string, number> }[]>): void;
  /** The Prometheus text exposition of this server's and the process's metrics. */
  render(): Promise<{ contentType: string; body: string }>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  const httpRequestDuration = new Histogram({
    name: 'jobline_http_request_duration_seconds',
    help: 'HTTP request duration by method, route template and status code.',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const jobMetrics = createJobMetrics(registry);
  const sockets = new Gauge({ name: 'jobline_socket_connections', help: 'Connected Socket.IO clients.', registers: [registry] });
  const subscriptions = new Gauge({ name: 'jobline_subscriptions', help: 'Live subscriptions (Socket.IO and SSE).', registers: [registry] });
  const sent = new Counter({
    name: 'jobline_events_sent_total',
    help: 'Job events sent to live clients.',
    labelNames: ['transport'] as const,
    registers: [registry],
  });
  const realtime: RealtimeMetrics = {
    connected: (delta) => sockets.inc(delta),
    subscriptions: (delta) => subscriptions.inc(delta),
    sent: (count, transport = 'socketio') => sent.inc({ transport }, count),
  };
  let readQueueCounts: (() => Promise<{ name: string; counts: Record<string, number> }[]>) | null = null;
  let readScheduleCount: (() => Promise<number>) | null = null;
  new Gauge({
    name: 'jobline_schedules',
    help: 'Cron schedules.',
    registers: [registry],
    async collect() {
      if (readScheduleCount) this.set(await readScheduleCount());
    },
  });
  new Gauge({
    name: 'jobline_jobs',
    help: 'Jobs by queue and state.',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      if (!readQueueCounts) return;
      this.reset();
      for (const queue of await readQueueCounts()) {
        for (const [state, count] of Object.entries(queue.counts)) this.set({ queue: queue.name, state }, count);
      }
    },
  });
  return {
    registry,
    httpRequestDuration,
    jobs: jobMetrics,
    webhooks: createWebhookMetrics(registry),
    realtime,
    scheduler: createSchedulerMetrics(registry),
    setScheduleCount: (read) => {
      readScheduleCount = read;
    },
    setQueueCounts: (read) => {
      readQueueCounts = read;
    },
    render: async () => {
      const merged = Registry.merge([sharedProcessRegistry(), registry]);
      return { contentType: merged.contentType, body: await merged.metrics() };
    },
  };
}

const JOB_SECONDS_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800];

function createJobMetrics(registry: Registry): JobMetrics {
  const labelNames = ['queue', 'type'] as const;
  const completed = new Counter({ name: 'jobline_jobs_completed_total', help: 'Jobs completed.', labelNames, registers: [registry] });
  const failed = new Counter({ name: 'jobline_jobs_failed_total', help: 'Jobs failed for good (dead-lettered).', labelNames, registers: [registry] });
  const retried = new Counter({ name: 'jobline_job_retries_total', help: 'Failed attempts that will be retried.', labelNames, registers: [registry] });
  const discarded = new Counter({
    name: 'jobline_job_results_discarded_total',
    help: 'Attempts whose outcome was refused because the lease had been lost (cancelled, expired, fenced).',
    labelNames,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'jobline_job_duration_seconds',
    help: 'How long attempts ran.',
    labelNames,
    buckets: JOB_SECONDS_BUCKETS,
    registers: [registry],
  });
  const wait = new Histogram({
    name: 'jobline_job_wait_seconds',
    help: 'How long jobs waited between becoming due and starting.',
    labelNames,
    buckets: JOB_SECONDS_BUCKETS,
    registers: [registry],
  });
  const counters = { completed, failed, retried, discarded };
  return {
    attemptEnded: (labels, outcome, durationMs) => {
      counters[outcome].inc(labels);
      duration.observe(labels, durationMs / 1000);
    },
    attemptStarted: (labels, waitMs) => wait.observe(labels, Math.max(0, waitMs) / 1000),
  };
}

function createSchedulerMetrics(registry: Registry): SchedulerMetrics {
  const fires = new Counter({ name: 'jobline_schedule_fires_total', help: 'Jobs created by schedules at their fire times.', registers: [registry] });
  const skips = new Counter({
    name: 'jobline_schedule_skips_total',
    help: 'Fire times that created no job: overlap (the previous job still running), missed (the scheduler was down), error (the template is no longer a valid job).',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const lag = new Histogram({
    name: 'jobline_schedule_fire_lag_seconds',
    help: 'From a fire time to the creation of its job.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
    registers: [registry],
  });
  return {
    fired: (lagMs) => {
      fires.inc();
      lag.observe(Math.max(0, lagMs) / 1000);
    },
    skipped: (reason, count) => skips.inc({ reason }, count),
  };
}

function createWebhookMetrics(registry: Registry): WebhookMetrics {
  const deliveries = new Counter({
    name: 'jobline_webhook_deliveries_total',
    help: 'Webhook delivery attempts by what became of the delivery: succeeded, failed (for good) or retried.',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'jobline_webhook_attempt_duration_seconds',
    help: 'How long webhook delivery attempts took, answered or not.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15],
    registers: [registry],
  });
  return {
    attemptEnded: (outcome, durationMs) => {
      deliveries.inc({ outcome });
      duration.observe(Math.max(0, durationMs) / 1000);
    },
  };
}
