//! The Lua scripts: each runs atomically in Redis, on the keys of one atSign (one slot).

/// Checks the record (ARGV[2] = "1" and ARGV[3] the bytes read, or "0" for none), then puts
/// ARGV[5] (ARGV[4] = "put") or deletes, then with ARGV[6] = "1" adds the commit entry
/// (op ARGV[7], time ARGV[8]) replacing the key's older one. Returns {0, what it holds} when
/// the record is not what was expected, else {1} or {1, commit id}.
pub(super) const MODIFY: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return {0, current} end
elseif current then
  return {0, current}
end
if ARGV[4] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if ARGV[6] ~= '1' then return {1} end
local id = redis.call('INCR', KEYS[4]) - 1
local older = redis.call('HGET', KEYS[3], ARGV[1])
if older then redis.call('ZREMRANGEBYSCORE', KEYS[2], older, older) end
redis.call('HSET', KEYS[3], ARGV[1], id)
redis.call('ZADD', KEYS[2], id, id .. ':' .. ARGV[7] .. ':' .. ARGV[8] .. ':' .. ARGV[1])
return {1, id}
";

/// Drops the commit entries ARGV = id1, key1, id2, key2, …; a key's index goes with its entry
/// unless a newer write has moved it on. Returns how many entries were there.
pub(super) const DROP_COMMITS: &str = r"
local dropped = 0
for i = 1, #ARGV, 2 do
  dropped = dropped + redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i])
  if redis.call('HGET', KEYS[2], ARGV[i + 1]) == ARGV[i] then
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
  end
end
return dropped
";

/// Replaces the atSign's info only if it exists. Returns 1 if it did.
pub(super) const SET_INFO: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";
