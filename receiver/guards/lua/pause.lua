-- Pause all automation, for a while or until resumed (the key is deleted to resume).
-- KEYS: pause hash. ARGV: reason, duration ms ('' for until resumed), optionally the clock in ms
-- since the epoch (a rule test's simulated clock; '' or absent: the server's TIME), optionally
-- who paused (shown by status).
-- Reply: until-ms, or -1 when the pause has no end. A pause with an end is over at `until`
-- (admit.lua compares); the key's TTL, a margin longer, only collects the garbage.
local now
if ARGV[3] and ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local GC_MARGIN_MS = 60000

redis.call('DEL', KEYS[1])
if ARGV[4] and ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'by', ARGV[4]) end
if ARGV[2] == '' then
  redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'since', string.format('%.0f', now), 'until', '')
  return -1
end
local until_ms = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'since', string.format('%.0f', now),
  'until', string.format('%.0f', until_ms))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + GC_MARGIN_MS)
return until_ms
