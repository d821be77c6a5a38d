-- Set RQ's status of the jobs whose record still exists: the status of a job whose record
-- was deleted (a dashboard's Delete, an eviction) set by HSET would leave a hash with a status
-- and no data, which no worker can run or RQ write back.
-- KEYS: the jobs' hashes
-- ARGV[1] the status
-- Returns how many were set.
local set = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'status', ARGV[1])
    set = set + 1
  end
end
return set
