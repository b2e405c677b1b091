/**
 * staleInstances: the engine instances whose last heartbeat is older than a maximum age, by
 * Redis' own clock.
 *
 * Inputs:   KEYS[1] the sorted set of instances (score: last heartbeat, ms); ARGV[1] the maximum age (ms).
 * Output:   an array of instance ids (possibly empty).
 * Failures: none of its own (WRONGTYPE if the key is not a sorted set).
 */
export const STALE_INSTANCES = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
`;
