-- A turn begins: the client_id's first use (when given), the turn's lock, and what the
-- turn reads. KEYS: session, client_ids, lock, conversation, cards, then the session's
-- cards. ARGV: client_id or '', the holder's token, the lease in ms, the open statuses as
-- stored, then the session's card ids.
local stale = stale_cards(KEYS[5], 5, 4)
if stale then return stale end
if ARGV[1] ~= '' then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl <= 0 or redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return {'seen'} end
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'busy'} end
local reply = {'held', redis.call('GET', KEYS[4]) or ''}
for i = 6, #KEYS do
  local status = redis.call('HGET', KEYS[i], 'status')
  if status and ARGV[4]:find(status, 1, true) then
    reply[#reply + 1] = redis.call('HGETALL', KEYS[i])
  end
end
return reply
