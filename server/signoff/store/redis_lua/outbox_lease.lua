-- Outbox: KEYS[1] the lane's list, KEYS[2] its lease. ARGV: holder, lease in ms.
local current = redis.call('GET', KEYS[2])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
