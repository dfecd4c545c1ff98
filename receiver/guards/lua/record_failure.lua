-- Record one failed run of a rule and open its circuit breaker when the failures within the
-- window reach the threshold. Successes are not recorded: they do not erase failures, so a
-- flapping rule still trips. Failures are kept when the breaker opens, so once it closes a
-- single new failure inside the window opens it again (half-open).
-- KEYS: failures ZSET, breaker key (holding until-ms while open). ARGV: unique member,
-- threshold, window ms, open-for ms, optionally the clock in ms since the epoch (a rule test's
-- simulated clock; else the server's TIME).
-- Reply: until-ms of the open breaker, or -1 when it is closed.
local now
if ARGV[5] and ARGV[5] ~= '' then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Keys outlive their until-time by this much; the until-time decides (admit.lua).
local GC_MARGIN_MS = 60000
local window = tonumber(ARGV[3])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('PEXPIRE', KEYS[1], window + GC_MARGIN_MS)

local opened = tonumber(redis.call('GET', KEYS[2]) or '')
if opened and opened > now then return opened end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then return -1 end
-- Opening records until when; failures arriving while open do not extend it.
local open_until = now + tonumber(ARGV[4])
redis.call('SET', KEYS[2], string.format('%.0f', open_until), 'PX', tonumber(ARGV[4]) + GC_MARGIN_MS)
return open_until
