-- A record counted in a window. KEYS: the record. ARGV: the window in ms, which starts
-- with the first count.
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
