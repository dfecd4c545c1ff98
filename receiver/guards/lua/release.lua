-- Release a lock only if it still holds our token (compare-and-delete), so a run whose lock
-- expired and was taken by another run cannot release the other run's lock.
-- KEYS: lock ('<until-ms>|<token>', or the bare token an older version wrote). ARGV: token.
-- Reply: 1 released, 0 not ours (or already gone). An expired lock of ours is deleted too: it
-- holds nothing any more.
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local token = string.match(value, '^%d+|(.*)$') or value
if token == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
