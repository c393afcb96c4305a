-- Outbox: KEYS[1] the lane's list, KEYS[2] its lease. ARGV: holder.
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
