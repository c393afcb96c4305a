-- For the scripts that reach each card of a session: the card keys follow the fixed
-- KEYS and their ids the fixed ARGV, as the caller believes them to be. When the
-- session's list holds other ids the script does nothing and answers 'stale' and the
-- ids, and the caller runs it again with those (no WATCH needed). The loader puts this
-- in front of each script that calls it (SCRIPTS in __init__.py).
local function stale_cards(list, fixed_keys, fixed_args)
  local ids = redis.call('LRANGE', list, 0, -1)
  local same = #ids == #KEYS - fixed_keys and #ids == #ARGV - fixed_args
  for i, id in ipairs(ids) do
    if ARGV[fixed_args + i] ~= id then same = false end
  end
  if same then return false end
  table.insert(ids, 1, 'stale')
  return ids
end
