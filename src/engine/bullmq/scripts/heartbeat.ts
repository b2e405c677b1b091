/**
 * heartbeat: records an engine instance as alive at Redis' own clock (so the clocks of different
 * hosts do not matter), and the id of its commands connection.
 *
 * Inputs:   KEYS[1] the sorted set of instances (score: last heartbeat, ms);
 *           KEYS[2] the hash instance → connection id;
 *           ARGV[1] the instance id; ARGV[2] its connection id, or '' when not known yet (left as it was).
 * Output:   1.
 * Failures: none of its own (WRONGTYPE if a key holds another type).
 */
export const HEARTBEAT = `
local time = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return 1
`;
