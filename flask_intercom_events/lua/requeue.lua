-- Failed jobs back to the tail of RQ's queue, unless someone else took them out of the
-- failed registry first; the count of failures by reason follows.
-- KEYS[1] RQ failed registry, KEYS[2] RQ queue, KEYS[3] hash reason -> failed count
-- ARGV: job id, reason pairs
-- Returns the ids moved.
local moved = {}
for i = 1, #ARGV, 2 do
  local id, reason = ARGV[i], ARGV[i + 1]
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('RPUSH', KEYS[2], id)
    if reason ~= '' and add_to_count(KEYS[3], reason, -1) <= 0 then
      redis.call('HDEL', KEYS[3], reason)
    end
    moved[#moved + 1] = id
  end
end
return moved
