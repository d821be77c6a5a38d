-- A worker takes up to ARGV[1] job ids off RQ's queue into the hash of jobs it holds, within
-- the rate budget (library: budget.lua). While Intercom refuses the token (the budget is
-- paused) it takes one job per probe interval, to find out when the token works again.
-- KEYS[1] RQ queue (list of job ids), KEYS[2] the worker's held hash (job id -> execution
--         id, '' until started), KEYS[3] budget
-- ARGV[1] most to take, ARGV[2] allowance per window, ARGV[3] window seconds,
-- ARGV[4] probe interval seconds, ARGV[5] now ('' = Redis)
-- Returns {ids, seconds until the budget allows more (string; '0': not limited),
--          ids left in the queue, 1 if paused (the ids are a probe) else 0}.
local now = budget_clock(ARGV[5])
local want = math.min(tonumber(ARGV[1]), redis.call('LLEN', KEYS[1]))
local paused = 0
if redis.call('HEXISTS', KEYS[3], 'paused') == 1 then
  paused = 1
  local probe_at = tonumber(redis.call('HGET', KEYS[3], 'probe_at')) or 0
  if now < probe_at then
    return {{}, tostring(probe_at - now), redis.call('LLEN', KEYS[1]), paused}
  end
  if want <= 0 then
    return {{}, '0', 0, paused}
  end
  redis.call('HSET', KEYS[3], 'probe_at', string.format('%.3f', now + tonumber(ARGV[4])))
  want = 1
end
if want <= 0 then
  return {{}, '0', 0, paused}
end
local granted, wait = budget_take(KEYS[3], want, tonumber(ARGV[2]), tonumber(ARGV[3]), now)
local ids = {}
if granted > 0 then
  ids = redis.call('LRANGE', KEYS[1], 0, granted - 1)
  redis.call('LTRIM', KEYS[1], granted, -1)
  for _, id in ipairs(ids) do
    redis.call('HSET', KEYS[2], id, '')
  end
end
return {ids, tostring(wait), redis.call('LLEN', KEYS[1]), paused}
