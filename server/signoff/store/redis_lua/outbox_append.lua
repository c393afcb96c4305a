-- Outbox: KEYS[1] the lane's list, KEYS[2] its lease. ARGV: entry, the lane's cap.
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
