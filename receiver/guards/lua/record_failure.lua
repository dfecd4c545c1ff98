-- Record one failed run of a rule and open its circuit breaker when the failures within the
-- window reach the threshold. Successes are not recorded: they do not erase failures, so a
-- flapping rule still trips. Failures are kept when the breaker opens, so once it closes a
-- single new failure inside the window opens it again (half-open).
-- KEYS: failures ZSET, breaker key. ARGV: unique member, threshold, window ms, open-for ms.
-- Reply: until-ms of the open breaker, or -1 when it is closed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[3])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)

local opened = redis.call('GET', KEYS[2])
if opened then return tonumber(opened) end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then return -1 end
-- Opening records until when; failures arriving while open do not extend it.
local open_until = now + tonumber(ARGV[4])
redis.call('SET', KEYS[2], open_until, 'PX', ARGV[4])
return open_until
