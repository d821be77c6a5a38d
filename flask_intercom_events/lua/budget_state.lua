-- Where a budget's current window stands (library: budget.lua); reads only.
-- KEYS[1] budget
-- ARGV[1] window seconds, ARGV[2] now ('' = Redis)
-- Returns {seconds to reset, used, seconds blocked, learned limit or -1, paused since or '',
--          paused reason or '', seconds to the next probe or ''}.
local now = budget_clock(ARGV[2])
local reset, used, blocked, header_limit = budget_window(KEYS[1], tonumber(ARGV[1]), now)
local pause = redis.call('HMGET', KEYS[1], 'paused', 'paused_reason', 'probe_at')
local probe_in = ''
if pause[3] then
  probe_in = tostring(math.max(tonumber(pause[3]) - now, 0))
end
return {tostring(reset - now), used, tostring(math.max(blocked - now, 0)), header_limit or -1,
        pause[1] or '', pause[2] or '', probe_in}
