/**
 * epoch: the Redis data set's epoch, created when missing. A missing or changed epoch tells an
 * instance that Redis lost its data (a restart without persistence, a failover). Any Redis version.
 *
 * Inputs:   KEYS[1] the epoch key; ARGV[1] the value to store when it is missing.
 * Output:   the value the key held before, or nil when it was missing (and now holds ARGV[1]).
 * Failures: none of its own (WRONGTYPE if the key is not a string).
 */
export const EPOCH = `
local previous = redis.call('GET', KEYS[1])
if not previous then redis.call('SET', KEYS[1], ARGV[1]) end
return previous
`;
