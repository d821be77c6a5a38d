-- Correct a budget with what Intercom answered (library: budget.lua). The caller has already
-- dropped header values outside sane bounds.
-- KEYS[1] budget
-- ARGV[1] window seconds, ARGV[2] X-RateLimit-Limit (or ''), ARGV[3] -Remaining (or ''),
-- ARGV[4] seconds until -Reset (or ''), ARGV[5] block every worker this many seconds (or ''),
-- ARGV[6] seconds a learned limit is trusted, ARGV[7] now ('' = Redis)
-- Returns the seconds every worker is now blocked for, as a string.
local key, width = KEYS[1], tonumber(ARGV[1])
local header_limit, remaining = tonumber(ARGV[2]), tonumber(ARGV[3])
local reset_in, block_for = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = budget_clock(ARGV[7])
local reset, used, blocked, _, late = budget_window(key, width, now)
if header_limit then
  redis.call('HSET', key, 'limit', header_limit,
             'limit_until', string.format('%.3f', now + tonumber(ARGV[6])))
end
if header_limit and remaining and reset_in then
  local reported = now + reset_in
  local spent = header_limit - remaining
  if reported > now then
    if math.abs(reported - reset) <= 0.5 then
      used = math.max(used, spent)
    elseif reported > reset then
      -- Intercom is already in a later window than ours: follow it.
      reset, used, late = reported, spent, 0
    else
      -- Intercom's window ends before ours: adopt its end, keep the larger count.
      reset, used = reported, math.max(used, spent)
    end
    if remaining <= 0 then
      blocked = math.max(blocked, reported)
    end
  end
end
if block_for then
  blocked = math.max(blocked, now + block_for)
end
budget_save(key, reset, used, late, width)
if blocked > now then
  redis.call('HSET', key, 'blocked', string.format('%.3f', blocked))
end
return tostring(math.max(blocked - now, 0))
