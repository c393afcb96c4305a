-- This instance follows a session, or stops. KEYS: session, listeners. ARGV: instance,
-- '1' to follow or '' to stop.
if ARGV[2] == '' then return redis.call('SREM', KEYS[2], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('PEXPIRE', KEYS[2], ttl)
