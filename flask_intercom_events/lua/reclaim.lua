-- Everything a dead worker held goes back: its moving list to the head of the intake, its
-- held jobs to the head of RQ's queue. Refused while the worker is alive (its RQ worker key
-- exists without a death mark, or the heartbeat key of a worker of an earlier version
-- exists), unless forced (the worker itself, stopping).
-- KEYS[1] our workers set, KEYS[2] the worker's RQ worker key, KEYS[3] its earlier-version
--         heartbeat key, KEYS[4] its held hash, KEYS[5] its moving list, KEYS[6] intake,
--         KEYS[7] RQ queue, KEYS[8] RQ started registry, KEYS[9] stats
-- ARGV[1] worker name, ARGV[2] '1' to force
-- Returns {events moved to the intake, then job id, execution id pairs} or {-1} if alive.
if ARGV[2] ~= '1' then
  if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('HEXISTS', KEYS[2], 'death') == 0 then
    return {-1}
  end
  if redis.call('EXISTS', KEYS[3]) == 1 then
    return {-1}
  end
end
local items = redis.call('LRANGE', KEYS[5], 0, -1)
for i = #items, 1, -1 do
  redis.call('LPUSH', KEYS[6], items[i])
end
local result = {#items}
local held = redis.call('HGETALL', KEYS[4])
for i = 1, #held, 2 do
  local id, execution = held[i], held[i + 1]
  if execution ~= '' then
    redis.call('ZREM', KEYS[8], id .. ':' .. execution)
  end
  redis.call('LPUSH', KEYS[7], id)
  result[#result + 1] = id
  result[#result + 1] = execution
end
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('SREM', KEYS[1], ARGV[1])
local moved = #items + #held / 2
if moved > 0 then
  add_to_count(KEYS[9], 'reclaimed', moved)
end
return result
