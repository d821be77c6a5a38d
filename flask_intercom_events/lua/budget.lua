-- Library: the rate budget of one access token, shared by every worker (prepended to the
-- scripts that spend from it or correct it; not a script of its own).
--
-- The budget is a hash: reset (when the current window ends, Unix seconds), used (calls
-- granted or reported in it), late (calls granted in its last moments, which may reach
-- Intercom once the next window began: they count in both), blocked (no call before this
-- time: a 429 or Remaining 0), limit and limit_until (a lower allowance Intercom reported in
-- X-RateLimit-Limit, trusted until limit_until), paused/probe_at/paused_reason (Intercom
-- refused the token: one probe call every probe interval until a call succeeds).

-- The clock: Redis's own, so machines need not agree on the time; a number in `given`
-- instead (the tests' table of windows).
local function budget_clock(given)
  if given ~= nil and given ~= '' then
    return tonumber(given)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- The current window: its reset time, what was spent in it, blocked-until, the learned
-- limit (nil once expired) and the late calls.
local function budget_window(key, width, now)
  local s = redis.call('HMGET', key, 'reset', 'used', 'blocked', 'limit', 'late', 'limit_until')
  local reset = tonumber(s[1])
  local used = tonumber(s[2]) or 0
  local late = tonumber(s[5]) or 0
  if not reset then
    reset = (math.floor(now / width) + 1) * width
    used, late = 0, 0
  elseif now >= reset then
    if now < reset + width then
      used = late
    else
      used = 0
    end
    late = 0
    reset = reset + (math.floor((now - reset) / width) + 1) * width
  end
  local limit = tonumber(s[4])
  local limit_until = tonumber(s[6])
  if limit and (not limit_until or now >= limit_until) then
    limit = nil
  end
  return reset, used, tonumber(s[3]) or 0, limit, late
end

local function budget_save(key, reset, used, late, width)
  redis.call('HSET', key, 'reset', string.format('%.3f', reset), 'used', used, 'late', late)
  redis.call('PEXPIRE', key, math.ceil(width * 1000) * 60)
end

-- Spend up to `want` calls: returns granted, wait (seconds until more can be granted when
-- fewer than `want` were; 0 otherwise).
local function budget_take(key, want, limit, width, now)
  local reset, used, blocked, header_limit, late = budget_window(key, width, now)
  if now < blocked then
    return 0, blocked - now
  end
  if header_limit and header_limit < limit then
    limit = header_limit
  end
  local granted = math.max(0, math.min(want, limit - used))
  if reset - now < math.min(0.25, width / 10) then
    late = late + granted
  end
  budget_save(key, reset, used + granted, late, width)
  if granted < want then
    return granted, math.max(reset - now, 0.001)
  end
  return granted, 0
end
