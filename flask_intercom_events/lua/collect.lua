-- A worker moves up to ARGV[1] tracked events from the intake into its moving list, where
-- they stay until they are RQ jobs (a worker killed meanwhile leaves them there, and whoever
-- reclaims it puts them back on the intake).
-- KEYS[1] intake (list of event lines), KEYS[2] the worker's moving list
-- ARGV[1] most to move
-- Returns how many were moved.
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  redis.call('RPUSH', KEYS[2], unpack(items))
end
return #items
