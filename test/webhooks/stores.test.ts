import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, migrateToLatest, type DatabaseHandle } from '../../src/config/database.js';
import type { WebhookMetrics } from '../../src/config/metrics.js';
import { systemClock } from '../../src/utils/clock.js';
import { newId } from '../../src/utils/ids.js';
import { createLogger } from '../../src/utils/logger.js';
import { createOutboundPolicy } from '../../src/utils/ssrfGuard.js';
import { newWebhookSecret } from '../../src/utils/webhookSignature.js';
import { WebhookDispatcher } from '../../src/webhooks/webhookDispatcher.js';
import { WebhookWorker } from '../../src/webhooks/webhookWorker.js';
import { createTestDatabase, testDatabases } from '../helpers/postgres.js';
import { startReceiver, until, type Receiver } from './helpers.js';

const databases = await testDatabases();
const logger = createLogger({ level: 'silent' });
const metrics: WebhookMetrics = { attemptEnded: () => undefined };

/**
 * The dispatcher and the sender on each records database, driven directly: the same Kysely code
 * must hold on PostgreSQL, where several processes may dispatch and send from one store.
 */
describe.each(databases)('webhook outbox and sender on %s', (kind) => {
  let handle: DatabaseHandle;
  let receiver: Receiver;
  const cleanups: (() => Promise<void> | void)[] = [];

  beforeAll(async () => {
    if (kind === 'postgres') {
      const database = await createTestDatabase();
      cleanups.push(database.drop);
      handle = createDatabase({ kind: 'postgres', url: database.url });
    } else {
      const dir = mkdtempSync(path.join(tmpdir(), 'jobline-webhook-store-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      handle = createDatabase({ kind: 'sqlite', file: path.join(dir, 'jobline.db') });
    }
    cleanups.push(() => handle.close());
    await migrateToLatest(handle.db);
    receiver = await startReceiver();
    cleanups.push(() => receiver.close());
  });
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  /** A finished job with its events written the way the engines write them (deltas coalesced). */
  async function writeJob(ownerId: string): Promise<string> {
    const id = newId();
    const now = Date.now();
    await handle.db
      .insertInto('jobs')
      .values({
        id, queue: 'default', type: 'stream', state: 'completed', priority: 0, payload: 'null', result: '"ok"', error: null,
        progress: null, attempts_made: 1, max_attempts: 3, crash_count: 0, backoff: '{"type":"fixed","delay":1000}', timeout_ms: null,
        expires_at: null, idempotency_key: null, singleton_key: null, tags: '[]', owner_id: ownerId, schedule_id: null,
        created_at: now, run_at: now, started_at: now, finished_at: now, lease_token: null, lease_expires_at: null, worker_id: null, last_seq: 4,
      })
      .execute();
    await handle.db
      .insertInto('job_events')
      .values([
        { job_id: id, seq: 1, seq_end: null, type: 'job.created', at: now, data: '{}' },
        { job_id: id, seq: 2, seq_end: 3, type: 'job.delta', at: now, data: JSON.stringify({ chunks: ['x', 'y'] }) },
        { job_id: id, seq: 4, seq_end: null, type: 'job.completed', at: now, data: '{"result":"ok"}' },
      ])
      .execute();
    return id;
  }

  it('creates one delivery per event exactly once with two dispatchers racing, and sends each signed', async () => {
    const ownerId = newId();
    await handle.db
      .insertInto('users')
      .values({ id: ownerId, email: `${kind}@example.com`, password_hash: 'x', role: 'user', token_version: 0, created_at: 1, updated_at: 1 })
      .execute();
    const secret = newWebhookSecret();
    const endpointId = newId();
    const created = Date.now() - 1000;
    await handle.db
      .insertInto('webhook_endpoints')
      .values({
        id: endpointId, owner_id: ownerId, url: receiver.url(`/${kind}`), description: null, events: '["*","job.delta"]', queue: null, secret,
        previous_secret: null, previous_secret_expires_at: null, enabled: 1, disabled_reason: null, failing_since: null, created_at: created, updated_at: created,
      })
      .execute();
    const dispatchers = [1, 2].map(() => new WebhookDispatcher({ db: handle.db, clock: systemClock, logger, batchSize: 7, intervalMs: 5 }));
    const jobIds: string[] = [];
    for (let i = 0; i < 10; i += 1) jobIds.push(await writeJob(ownerId));
    for (const dispatcher of dispatchers) dispatcher.start();
    for (let i = 0; i < 10; i += 1) jobIds.push(await writeJob(ownerId));
    const rows = await until(
      () => handle.db.selectFrom('webhook_deliveries').selectAll().execute(),
      (list) => list.length >= 80,
      8000,
      '80 deliveries',
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (const dispatcher of dispatchers) await dispatcher.stop();
    const keys = (await handle.db.selectFrom('webhook_deliveries').select(['job_id', 'event_seq']).execute()).map((row) => `${row.job_id}:${row.event_seq}`);
    expect(keys).toHaveLength(80);
    expect(new Set(keys).size).toBe(80);
    expect(rows.filter((row) => row.event_type === 'job.delta')).toHaveLength(40);

    const worker = new WebhookWorker({
      db: handle.db, clock: systemClock, logger, metrics, policy: createOutboundPolicy({ allow: ['127.0.0.0/8'] }),
      retryDelays: [50], disableAfterMs: 60_000, releaseLocksAtStart: false,
    });
    await worker.start();
    try {
      await until(
        () => handle.db.selectFrom('webhook_deliveries').select('status').where('status', '=', 'succeeded').execute(),
        (list) => list.length === 80,
        10_000,
        '80 sent deliveries',
      );
    } finally {
      await worker.stop(1000);
    }
    const hits = receiver.hits(`/${kind}`);
    expect(new Set(hits.map((hit) => hit.headers['webhook-id'])).size).toBe(80);
    for (const hit of hits) expect(() => new Webhook(secret).verify(hit.body, hit.headers as Record<string, string>)).not.toThrow();
    const position = await handle.db.selectFrom('outbox_cursors').select('position').where('consumer', '=', 'webhooks').executeTakeFirstOrThrow();
    const head = await handle.db.selectFrom('job_events').select((eb) => eb.fn.max('id').as('id')).executeTakeFirstOrThrow();
    expect(Number(position.position)).toBe(Number(head.id));
  });
});
