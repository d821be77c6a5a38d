-- A worker puts jobs it holds back at the head of RQ's queue (stopping, or a claim it lost
-- track of), unless someone else took them over meanwhile.
-- KEYS[1] the worker's held hash, KEYS[2] RQ queue, KEYS[3] RQ started registry
-- ARGV: job ids
-- Returns {job id, execution id ('' if never started)} pairs of the jobs released.
local released = {}
for i = #ARGV, 1, -1 do
  local id = ARGV[i]
  local execution = redis.call('HGET', KEYS[1], id)
  if execution then
    redis.call('HDEL', KEYS[1], id)
    if execution ~= '' then
      redis.call('ZREM', KEYS[3], id .. ':' .. execution)
    end
    redis.call('LPUSH', KEYS[2], id)
    released[#released + 1] = id
    released[#released + 1] = execution
  end
end
return released
