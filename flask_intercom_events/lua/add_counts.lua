-- Add to counters of one hash (the queue's counters, the failures or retries by reason).
-- KEYS[1] the hash
-- ARGV: field, amount pairs (an amount may be negative)
-- A count that falls to 0 or below goes (a reason no event has any more).
-- Returns the number of fields changed.
for i = 1, #ARGV, 2 do
  if add_to_count(KEYS[1], ARGV[i], ARGV[i + 1]) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return #ARGV / 2
