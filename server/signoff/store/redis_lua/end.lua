-- KEYS: the session's keys, then its cards'. ARGV: news channel, this instance, card ids.
local stale = stale_cards(KEYS[2], 7, 2)
if stale then return stale end
local existed = redis.call('DEL', KEYS[1])
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
if existed == 1 then redis.call('PUBLISH', ARGV[1], ARGV[2] .. ':end') end
return existed
