-- Outbox: KEYS[1] the lane's list, KEYS[2] its lease. ARGV: holder, entry.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[2] then return 0 end
redis.call('LPOP', KEYS[1])
return 1
