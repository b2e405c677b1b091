import { sql } from 'kysely';
import { toError } from '../../utils/errors.js';
import { EPOCH } from './scripts/epoch.js';
import { HEARTBEAT } from './scripts/heartbeat.js';
import { STALE_INSTANCES } from './scripts/staleInstances.js';
import type { InstanceState } from './state.js';

const HEARTBEAT_MS = 1000;
/** An instance whose last heartbeat is this old is gone: its leases are recovered without waiting for them to expire. */
const HEARTBEAT_TTL_MS = 5000;

/**
 * Which engine instances are alive, and which Redis data set they share. Each instance
 * heartbeats into a sorted set at Redis' own time, with the id of its commands connection; an
 * instance whose heartbeat is stale and whose connection is closed is gone. An epoch key tells
 * when Redis lost its data (then heartbeats get time to come back before anyone is judged gone).
 */
export class Liveness {
  /** This instance's commands connection, as Redis numbers it (CLIENT ID): others ask Redis whether it is still connected. */
  private clientId: string | null = null;
  /** The Redis data set this instance knows (see checkEpoch). */
  private knownEpoch: string | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly state: InstanceState) {}

  async start(): Promise<void> {
    const { commands } = this.state.redis;
    // Each connection gets its own id: forget the old one as soon as it closes, learn the new one when ready.
    commands.on('close', () => (this.clientId = null));
    commands.on('ready', () => void this.learnClientId());
    await this.learnClientId();
    await this.heartbeat();
    this.timer = setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Leaves the set of instances, so what this one still holds is recovered at once by the others. */
  async leave(): Promise<void> {
    await this.state.redis.commands
      .multi()
      .zrem(this.state.key('instances'), this.state.instanceId)
      .hdel(this.state.key('instance-clients'), this.state.instanceId)
      .exec()
      .catch(() => undefined);
  }

  /** Whether Redis failed too recently for missing heartbeats to mean anything. */
  get unsettled(): boolean {
    return this.state.now() - this.state.lastRedisTroubleAt < 2 * HEARTBEAT_TTL_MS;
  }

  /** The instances with a heartbeat, alive or not yet judged gone. */
  async alive(): Promise<Set<string>> {
    return new Set(await this.state.redis.commands.zrange(this.state.key('instances'), '0', '-1'));
  }

  /**
   * Instances that stopped or died: those whose heartbeat is older than the TTL and whose
   * connection is closed (removed here from the set, by whichever sweep gets there first), and
   * those other than this one holding leases without any heartbeat (gone before a Redis restart).
   */
  async gone(): Promise<Set<string>> {
    const { commands } = this.state.redis;
    const instances = this.state.key('instances');
    const stale = (await commands.eval(STALE_INSTANCES, 1, instances, HEARTBEAT_TTL_MS)) as string[];
    const gone = new Set<string>();
    for (const instance of stale) {
      // Still connected to Redis: alive but not heartbeating (a blocked event loop, a long pause). Its jobs
      // wait for their leases to expire, so nothing runs twice while it may still be running them.
      if (await this.stillConnected(instance)) continue;
      if ((await commands.zrem(instances, instance)) === 1) {
        await commands.hdel(this.state.key('instance-clients'), instance);
        gone.add(instance);
      }
    }
    const { rows } = await sql<{ instance: string }>`
      select distinct split_part(lease_token, '.', 1) as instance from jobs where state = 'active' and lease_token is not null`.execute(this.state.options.db);
    const holders = rows.map((row) => row.instance).filter((instance) => instance !== this.state.instanceId && instance !== '' && !gone.has(instance));
    const scores = holders.length > 0 ? await commands.zmscore(instances, ...holders) : [];
    holders.forEach((instance, index) => {
      if (scores[index] === null) gone.add(instance);
    });
    return gone;
  }

  /**
   * Notices Redis losing its data (a restart without persistence, a failover): the epoch key is
   * gone, or holds another value than this instance saw. Returns true when it did (every waiting
   * job must then be put back on BullMQ); either way a missing key gives heartbeats time to return.
   */
  async checkEpoch(): Promise<boolean> {
    const now = this.state.now();
    let previous: unknown;
    try {
      previous = await this.state.redis.commands.eval(EPOCH, 1, this.state.key('epoch'), `${now}:${this.state.instanceId}`);
    } catch (error) {
      this.state.logger.warn({ err: toError(error) }, 'checking the Redis epoch failed');
      this.state.redisTrouble();
      return false;
    }
    const epoch = typeof previous === 'string' ? previous : `${now}:${this.state.instanceId}`;
    // A missing key means a Redis that lost its data, or a first start: either way, heartbeats may
    // be missing for a moment (live processes reconnecting), so nobody is judged gone meanwhile.
    if (typeof previous !== 'string') this.state.redisTrouble();
    const lost = this.knownEpoch !== null && epoch !== this.knownEpoch;
    if (lost) this.state.redisTrouble();
    this.knownEpoch = epoch;
    return lost;
  }

  /** Records this instance as alive, at Redis' own time, with its connection's id. */
  private async heartbeat(): Promise<void> {
    try {
      const { state } = this;
      await state.redis.commands.eval(HEARTBEAT, 2, state.key('instances'), state.key('instance-clients'), state.instanceId, this.clientId ?? '');
    } catch {
      this.state.redisTrouble();
    }
  }

  /** Each (re)connection gets a new id from Redis. */
  private async learnClientId(): Promise<void> {
    try {
      this.clientId = String(await this.state.redis.commands.client('ID'));
    } catch {
      this.state.redisTrouble();
    }
  }

  /** Whether an instance's commands connection (as its heartbeat recorded it) is still open on Redis. */
  private async stillConnected(instance: string): Promise<boolean> {
    const clientId = await this.state.redis.commands.hget(this.state.key('instance-clients'), instance);
    if (!clientId) return false;
    try {
      const listing = String(await this.state.redis.commands.call('CLIENT', 'LIST', 'ID', clientId));
      return listing.trim() !== '';
    } catch (error) {
      // CLIENT LIST ID needs Redis 6.2; without it, a missed heartbeat alone decides.
      this.state.logger.debug({ err: toError(error) }, 'CLIENT LIST ID failed');
      return false;
    }
  }
}
