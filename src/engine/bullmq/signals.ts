import { toError } from '../../utils/errors.js';
import type { InstanceState } from './state.js';
import type { Wakeups } from './wakeups.js';

/** What engine instances tell each other over pub/sub. */
export type Signal =
  | { kind: 'available'; queue: string }
  | { kind: 'due'; queue: string; at: number }
  | { kind: 'cancelled'; jobId: string }
  | { kind: 'paused'; queue: string; paused: boolean };

/**
 * Signals between engine instances over Redis pub/sub: new work, delayed work coming due,
 * cancellations and pauses. Best effort: whatever a process misses, its sweeps and its workers'
 * safety polls make up for.
 */
export class Signals {
  private readonly channel: string;

  constructor(
    private readonly state: InstanceState,
    private readonly wakeups: Wakeups,
  ) {
    this.channel = `${state.options.prefix}engine:signals`;
  }

  async listen(): Promise<void> {
    const { subscriber } = this.state.redis;
    subscriber.on('message', (channel: string, text: string) => {
      if (channel === this.channel) this.receive(text);
    });
    await subscriber.subscribe(this.channel);
  }

  send(signal: Signal): void {
    if (!this.state.running) return;
    this.state.redis.commands.publish(this.channel, JSON.stringify({ ...signal, from: this.state.instanceId })).catch((error: unknown) => {
      this.state.logger.debug({ err: toError(error) }, 'publishing an engine signal failed');
    });
  }

  /** Jobs of a queue became claimable: workers here hear it now, and so do the other processes. */
  available(queue: string): void {
    this.state.listeners.available(queue);
    this.send({ kind: 'available', queue });
  }

  private receive(text: string): void {
    let signal: Signal & { from?: string };
    try {
      signal = JSON.parse(text) as Signal & { from?: string };
    } catch {
      return;
    }
    if (signal.from === this.state.instanceId || !this.state.running) return;
    if (signal.kind === 'available') this.state.listeners.available(signal.queue);
    else if (signal.kind === 'due') this.wakeups.add(signal.queue, signal.at);
    else if (signal.kind === 'cancelled') this.state.listeners.cancelled(signal.jobId);
    else if (signal.kind === 'paused') this.state.setPaused(signal.queue, signal.paused);
  }
}
