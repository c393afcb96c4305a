-- KEYS: session, cards, the new card, then the session's cards. ARGV: card id, body,
-- status, updated_at, lease_until, timeout, session id, level, cards kept, the ended
-- statuses, then the session's card ids. Answers 0 (the session has ended), the stale ids, or
-- 'added' and the ids of the cards dropped to make room.
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
local stale = stale_cards(KEYS[2], 3, 10)
if stale then return stale end
redis.call('HSET', KEYS[3], 'body', ARGV[2], 'status', ARGV[3], 'updated_at', ARGV[4],
  'lease_until', ARGV[5], 'level', ARGV[8], '_timeout_at', ARGV[6], '_sid', ARGV[7])
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
-- Past the cards a session keeps, the oldest that have ended go.
local reply = {'added'}
local over = redis.call('LLEN', KEYS[2]) - tonumber(ARGV[9])
local keys, ids = {unpack(KEYS, 4)}, {unpack(ARGV, 11)}
table.insert(keys, KEYS[3])
table.insert(ids, ARGV[1])
for i, key in ipairs(keys) do
  if over <= 0 then break end
  local status = redis.call('HGET', key, 'status')
  if not status or ARGV[10]:find(status, 1, true) then
    redis.call('LREM', KEYS[2], 1, ids[i])
    redis.call('DEL', key)
    table.insert(reply, ids[i])
    over = over - 1
  end
end
return reply
