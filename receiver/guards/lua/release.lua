-- Release a lock only if it still holds our token (compare-and-delete), so a run whose lock
-- expired and was taken by another run cannot release the other run's lock, and a release that
-- lands late cannot release a later admission's lock of the same run.
-- KEYS: lock ('<until-ms>|<token>', or the bare token an older version wrote), then the run's
--       release mark. ARGV: token, then the lock's ttl in ms and, optionally, the clock in ms
--       since the epoch (as admit.lua's).
-- Reply: 1 released, 0 not ours (or already gone). An expired lock of ours is deleted too: it
-- holds nothing any more.
--
-- Releasing a token that carries its issue time (admit.lua, "A token is") leaves the run's
-- release mark, '<until-ms>|<issued-ms>', for the lock's ttl: an admission of the run issued
-- before it and landing late is then refused rather than taking the free lock. The mark keeps
-- the latest such time. Only admissions of this run read it; other runs see the lock free.
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local token = string.match(value, '^%d+|(.*)$') or value
if token ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])

-- As admit.lua's issued_ms: the first 12 of the token's 44 hex digits.
local digits = string.match(token, '/(' .. string.rep('[0-9a-f]', 44) .. ')$')
if not digits or not KEYS[2] or not ARGV[2] then return 1 end
local issued = tonumber(string.sub(digits, 1, 12), 16)
local now
if ARGV[3] and ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local mark = redis.call('GET', KEYS[2])
local mark_until, marked = string.match(mark or '', '^(%d+)|(%d+)$')
if mark_until and tonumber(mark_until) > now and tonumber(marked) >= issued then return 1 end
-- The key's TTL outlives the until-time by admit.lua's GC_MARGIN_MS; the until-time decides.
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[2], string.format('%.0f|%.0f', now + ttl, issued), 'PX', ttl + 60000)
return 1
