-- A session is made. KEYS: session. ARGV: its lifetime in ms, then field/value pairs.
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
