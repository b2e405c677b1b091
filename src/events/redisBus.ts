import type { Redis } from 'ioredis';
import { closeRedis } from '../config/redis.js';
import type { JobEvent } from '../engine/types.js';
import { toError } from '../utils/errors.js';
import type { Logger } from '../utils/logger.js';
import type { ControlMessage, EventBus } from './index.js';

export interface RedisEventBusOptions {
  /** Sends messages; the bus owns it and quits it on close. */
  publisher: Redis;
  /** Receives messages; dedicated to the bus (a subscribed connection can do little else), quit on close. */
  subscriber: Redis;
  /** Channels are `<prefix>events:jobs` and `<prefix>events:control`; processes that share a prefix share events. */
  prefix: string;
  logger: Logger;
}

/**
 * The event bus across processes, on Redis pub/sub. Each commit's batch of job events travels as
 * one JSON array; control messages go on a second channel. A process hears its own messages
 * through its subscription like everyone else's (never delivered locally as well), so every
 * process, the publisher included, sees each message once and in the order Redis received them.
 *
 * Pub/sub keeps nothing: a message published while a subscriber is disconnected never reaches it.
 * Live consumers tolerate that: the JobEventHub repairs a gap from stored events when the next
 * event of the job arrives, and when the subscriber is back (subscribed again) the bus tells its
 * `onResume` listeners, which catch up from storage even if no later event comes.
 */
export class RedisEventBus implements EventBus {
  private readonly jobListeners = new Set<(events: JobEvent[]) => void>();
  private readonly controlListeners = new Set<(message: ControlMessage) => void>();
  private readonly resumeListeners = new Set<() => void>();
  private readonly jobsChannel: string;
  private readonly controlChannel: string;
  private closing: Promise<void> | null = null;

  private constructor(private readonly options: RedisEventBusOptions) {
    this.jobsChannel = `${options.prefix}events:jobs`;
    this.controlChannel = `${options.prefix}events:control`;
  }

  /** Subscribes, then resolves: from then on this process hears every message published on the prefix. */
  static async connect(options: RedisEventBusOptions): Promise<RedisEventBus> {
    const bus = new RedisEventBus(options);
    options.subscriber.on('message', (channel: string, text: string) => bus.receive(channel, text));
    try {
      await options.subscriber.subscribe(bus.jobsChannel, bus.controlChannel);
    } catch (error) {
      await bus.close();
      throw error;
    }
    // After a reconnection: subscribed again (ioredis resubscribes too; SUBSCRIBE is idempotent, and
    // its reply says when it took effect), then everything published from here on is heard.
    options.subscriber.on('ready', () => void bus.resubscribed());
    return bus;
  }

  publishJobEvents(events: JobEvent[]): void {
    if (events.length > 0) this.publish(this.jobsChannel, events);
  }

  publishControl(message: ControlMessage): void {
    this.publish(this.controlChannel, message);
  }

  onJobEvents(listener: (events: JobEvent[]) => void): () => void {
    this.jobListeners.add(listener);
    return () => this.jobListeners.delete(listener);
  }

  onControl(listener: (message: ControlMessage) => void): () => void {
    this.controlListeners.add(listener);
    return () => this.controlListeners.delete(listener);
  }

  onResume(listener: () => void): () => void {
    this.resumeListeners.add(listener);
    return () => this.resumeListeners.delete(listener);
  }

  /** Sends what was already published (QUIT waits for earlier replies), then quits both connections. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.jobListeners.clear();
      this.controlListeners.clear();
      this.resumeListeners.clear();
      await Promise.all([closeRedis(this.options.publisher), closeRedis(this.options.subscriber)]);
    })();
    return this.closing;
  }

  /** Fire and forget, as the port asks; a lost message is logged, and live consumers repair gaps from storage. */
  private publish(channel: string, payload: unknown): void {
    if (this.closing) return;
    this.options.publisher.publish(channel, JSON.stringify(payload)).catch((error: unknown) => {
      this.options.logger.warn({ err: toError(error), channel }, 'could not publish an event to Redis; live clients will catch up from storage');
    });
  }

  private async resubscribed(): Promise<void> {
    try {
      await this.options.subscriber.subscribe(this.jobsChannel, this.controlChannel);
    } catch (error) {
      // Dropped again before the reply: the next 'ready' tries again.
      this.options.logger.warn({ err: toError(error) }, 'could not subscribe to the event bus again');
      return;
    }
    if (this.closing) return;
    this.options.logger.info('event bus connection back: live clients catch up from storage');
    this.deliver(this.resumeListeners, undefined);
  }

  private receive(channel: string, text: string): void {
    if (this.closing) return;
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch (error) {
      this.options.logger.warn({ err: toError(error), channel }, 'ignoring a malformed event bus message');
      return;
    }
    // Only Jobline processes of this deployment publish here, so the envelope is all that is checked.
    if (channel === this.jobsChannel && Array.isArray(payload)) {
      this.deliver(this.jobListeners, payload as JobEvent[]);
    } else if (channel === this.controlChannel && isControlMessage(payload)) {
      this.deliver(this.controlListeners, payload);
    } else {
      this.options.logger.warn({ channel }, 'ignoring an event bus message of unknown shape');
    }
  }

  /** A throwing listener must not starve the others, nor unwind into ioredis' reply parser. */
  private deliver<T>(listeners: Set<(payload: T) => void>, payload: T): void {
    for (const listener of listeners) {
      try {
        listener(payload);
      } catch (error) {
        this.options.logger.error({ err: toError(error) }, 'an event bus listener failed');
      }
    }
  }
}

function isControlMessage(value: unknown): value is ControlMessage {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}
