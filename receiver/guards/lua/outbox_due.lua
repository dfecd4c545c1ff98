-- The audit outbox's entries queued at least ARGV[1] ms ago by the server's clock (the clock
-- their stream ids were taken from), oldest first, at most ARGV[2] of them; and, in the same
-- call, what waits there (the drain's read is the gauges' too: no read of its own per scrape).
-- KEYS: the audit outbox (a stream).
-- Reply: {the time in ms since the epoch, how many entries wait, the oldest one's stream id or ''
-- when none does, XRANGE's reply {{id, {field, value, ...}}, ...}}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local depth = redis.call('XLEN', KEYS[1])
local oldest = ''
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if first[1] then oldest = first[1][1] end
local last = now - tonumber(ARGV[1])
local due = {}
if last >= 0 then
  due = redis.call('XRANGE', KEYS[1], '-', string.format('%.0f', last), 'COUNT', ARGV[2])
end
return {now, depth, oldest, due}
