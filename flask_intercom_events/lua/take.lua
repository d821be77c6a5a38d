-- Spend up to ARGV[1] calls from a budget (library: budget.lua).
-- KEYS[1] budget
-- ARGV[1] want, ARGV[2] allowance per window, ARGV[3] window seconds, ARGV[4] now ('' = Redis)
-- Returns {granted, wait seconds as a string}.
local granted, wait = budget_take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
                                  tonumber(ARGV[3]), budget_clock(ARGV[4]))
return {granted, tostring(wait)}
