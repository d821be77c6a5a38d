-- Scheduled retries that are due go to the tail of RQ's queue (whichever worker looks first;
-- no lock a dead worker could hold), and leave the count of scheduled retries by reason.
-- KEYS[1] RQ scheduled registry, KEYS[2] RQ queue, KEYS[3] hash job id -> retry reason,
-- KEYS[4] hash reason -> scheduled count
-- ARGV[1] now (Unix seconds), ARGV[2] most to move
-- Returns the ids moved.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('RPUSH', KEYS[2], id)
  local reason = redis.call('HGET', KEYS[3], id)
  if reason then
    redis.call('HDEL', KEYS[3], id)
    if add_to_count(KEYS[4], reason, -1) <= 0 then
      redis.call('HDEL', KEYS[4], reason)
    end
  end
end
return ids
