-- Claim, for each event, the first second from its created_at on that no different event of
-- the same contact and name holds: Intercom keeps one event per (contact, name, created_at),
-- so distinct events must not share one. A claim held by the same event (same uuid: a
-- re-delivery) is its own second again. Claims expire after ARGV[1] seconds.
-- KEYS: none (each claim's key is ARGV[3] .. the event's contact-and-name digest .. second)
-- ARGV[1] claim ttl seconds, ARGV[2] most seconds an event may move, ARGV[3] key prefix,
-- then per event: uuid, digest, created_at
-- Returns the chosen second per event, -1 where every second up to the most was taken.
local ttl, most, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local chosen = {}
for i = 4, #ARGV, 3 do
  local uuid, digest, base = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local second = -1
  for offset = 0, most do
    local key = prefix .. digest .. ':' .. (base + offset)
    local holder = redis.call('GET', key)
    if holder == uuid then
      redis.call('EXPIRE', key, ttl)
      second = base + offset
      break
    end
    if not holder then
      redis.call('SET', key, uuid, 'EX', ttl)
      second = base + offset
      break
    end
  end
  chosen[#chosen + 1] = second
end
return chosen
