-- The claim. KEYS: the card, and its session when the deadline is checked. ARGV: now,
-- new status, check deadline, the card's session id or '', whether the new status is a
-- claim, the level the card must be at or '', this instance's id; then the expected
-- statuses, the statuses that may move to the new one (each list after its length),
-- then field/value pairs to set.
local card = KEYS[1]
local status = redis.call('HGET', card, 'status')
if not status then return {'missing'} end
if ARGV[6] ~= '' then
  -- A card written before levels were kept as their own field has its level in the body.
  local level = redis.call('HGET', card, 'level')
  if not level then level = cjson.decode(redis.call('HGET', card, 'body'))['level'] end
  if tonumber(level) ~= tonumber(ARGV[6]) then return {'conflict', redis.call('HGETALL', card)} end
end
local i = 8
local expected, movable = false, false
for j = i + 1, i + tonumber(ARGV[i]) do if ARGV[j] == status then expected = true end end
i = i + tonumber(ARGV[i]) + 1
for j = i + 1, i + tonumber(ARGV[i]) do if ARGV[j] == status then movable = true end end
i = i + tonumber(ARGV[i]) + 1
if not expected then return {'conflict', redis.call('HGETALL', card)} end
if not movable then return {'badmove', status} end
local now = tonumber(ARGV[1])
if ARGV[3] == '1' then
  local timeout = tonumber(redis.call('HGET', card, '_timeout_at'))
  local expires = false
  if redis.call('HGET', card, '_sid') == ARGV[4] then
    expires = tonumber(redis.call('HGET', KEYS[2], 'expires_at'))
  end
  if now >= timeout or not expires or expires <= now then
    redis.call('HSET', card, 'status', '"expired"', 'updated_at', ARGV[1])
    return {'expired', redis.call('HGETALL', card), status}
  end
end
for j = i, #ARGV, 2 do redis.call('HSET', card, ARGV[j], ARGV[j + 1]) end
redis.call('HSET', card, 'status', ARGV[2], 'updated_at', ARGV[1])
-- The claiming instance is named: one that stops beating leaves its claims to others.
if ARGV[5] == '1' then redis.call('HSET', card, '_by', ARGV[7]) end
return {'ok', redis.call('HGETALL', card), status}
