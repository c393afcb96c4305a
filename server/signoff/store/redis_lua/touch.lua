-- KEYS: the session's keys, then its cards'. ARGV: now, new expiry, grace, card ids.
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at'))
local now = tonumber(ARGV[1])
if not expires or expires <= now then return false end
local stale = stale_cards(KEYS[2], 7, 3)
if stale then return stale end
local new = ARGV[2]
if tonumber(new) < expires then new = redis.call('HGET', KEYS[1], 'expires_at') end
redis.call('HSET', KEYS[1], 'expires_at', new)
local ttl = math.floor((tonumber(new) - now + tonumber(ARGV[3])) * 1000)
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
return redis.call('HGETALL', KEYS[1])
