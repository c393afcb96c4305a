-- A global index's entries are hints written next to the scripts, so a late write can
-- leave one stale; readers correct them with this. KEYS[1]: the index. ARGV: triples of
-- member, the score it was read with, its new score or '' to remove it. An entry whose
-- score changed since it was read was written anew meanwhile, and is left alone.
for i = 1, #ARGV, 3 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    end
  end
end
return 1
