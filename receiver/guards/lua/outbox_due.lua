-- The audit outbox's entries queued at least ARGV[1] ms ago by the server's clock (the clock
-- their stream ids were taken from), oldest first, at most ARGV[2] of them.
-- KEYS: the audit outbox (a stream). Reply: XRANGE's, {{id, {field, value, ...}}, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = now - tonumber(ARGV[1])
if last < 0 then return {} end
return redis.call('XRANGE', KEYS[1], '-', string.format('%.0f', last), 'COUNT', ARGV[2])
