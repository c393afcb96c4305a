-- Frames, the conversation, and the turn's lock let go, as one step; each part optional.
-- KEYS: session, seq, frames, conversation, lock, listeners. ARGV: max frames kept, news
-- channel, this instance, the conversation or '', the holder's token or '', then the
-- frames' JSON texts. Returns the last seq written (0 for none) and whether the lock was
-- still this holder's.
local ttl = redis.call('PTTL', KEYS[1])
local last = 0
if ttl > 0 then
  local count = #ARGV - 5
  if count > 0 then
    last = redis.call('INCRBY', KEYS[2], count)
    redis.call('PEXPIRE', KEYS[2], ttl)
    for i = 6, #ARGV do
      local seq = last - #ARGV + i
      local text = string.sub(ARGV[i], 1, -2) .. ',"seq":' .. seq .. '}'
      redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[1], seq .. '-0', 'f', text)
    end
    redis.call('PEXPIRE', KEYS[3], ttl)
    -- Only instances following the session hear of it; this one hands its own frames.
    local others = redis.call('SCARD', KEYS[6])
    if others > 0 and redis.call('SISMEMBER', KEYS[6], ARGV[3]) == 1 then others = others - 1 end
    if others > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3] .. ':frames') end
  end
  if ARGV[4] ~= '' then redis.call('SET', KEYS[4], ARGV[4], 'PX', ttl) end
end
local held = 1
if ARGV[5] ~= '' then
  if redis.call('GET', KEYS[5]) == ARGV[5] then redis.call('DEL', KEYS[5]) else held = 0 end
end
return {last, held}
