-- Library: counters in hashes (prepended to the scripts that count; not a script of its own).
--
-- add_to_count(key, field, by): HINCRBY, except that a field holding something other than an
-- integer (written by hand or by another tool) cannot stop the script that counts: Redis
-- refuses to HINCRBY it, and a script stopped midway keeps what it did before. Such a field
-- starts again from `by`. Returns the new count.
local function add_to_count(key, field, by)
  local count = redis.pcall('HINCRBY', key, field, by)
  if type(count) == 'table' and count.err then
    redis.call('HSET', key, field, by)
    return tonumber(by)
  end
  return count
end
