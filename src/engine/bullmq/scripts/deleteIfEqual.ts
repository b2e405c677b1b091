/**
 * deleteIfEqual: deletes a key only while it holds the given value (a lock nobody took over meanwhile).
 *
 * Inputs:   KEYS[1] the key; ARGV[1] the value it must hold.
 * Output:   1 when the key was deleted, 0 when it held another value or was missing.
 * Failures: none of its own (a Redis error, such as WRONGTYPE for a non-string key, is passed on).
 */
export const DELETE_IF_EQUAL = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;
