-- Release a lock only if it still holds our token (compare-and-delete), so a run whose lock
-- expired and was taken by another run cannot release the other run's lock.
-- KEYS: lock. ARGV: token. Reply: 1 released, 0 not ours (or already gone).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
