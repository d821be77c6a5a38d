-- Every count of a queue at one instant (reads only): events move intake -> moving list ->
-- RQ queue -> held -> (settled) in atomic steps, so counts read in several round trips could
-- miss a batch in motion. O(workers), whatever the backlog.
-- KEYS[1] intake, KEYS[2] RQ queue, KEYS[3] RQ started registry, KEYS[4] RQ scheduled
-- registry, KEYS[5] RQ failed registry, KEYS[6] stats, KEYS[7] our workers set,
-- KEYS[8] failed count by reason, KEYS[9] scheduled count by reason
-- ARGV[1] moving list key prefix, ARGV[2] held hash key prefix
-- Returns {intake, moving, queued, held, started, scheduled, failed, stats (flat),
--          failed by reason (flat), scheduled by reason (flat), intake head, queue head}.
local moving, held = 0, 0
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  moving = moving + redis.call('LLEN', ARGV[1] .. worker)
  held = held + redis.call('HLEN', ARGV[2] .. worker)
end
return {redis.call('LLEN', KEYS[1]), moving, redis.call('LLEN', KEYS[2]), held,
        redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]),
        redis.call('ZCARD', KEYS[5]), redis.call('HGETALL', KEYS[6]),
        redis.call('HGETALL', KEYS[8]), redis.call('HGETALL', KEYS[9]),
        redis.call('LINDEX', KEYS[1], 0) or false, redis.call('LINDEX', KEYS[2], 0) or false}
