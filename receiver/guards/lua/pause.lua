-- Pause all automation, for a while or until resumed (resume.lua deletes the key).
-- KEYS: pause hash, and optionally the audit outbox (a stream: receiver/guards/switch.py).
-- ARGV: reason, duration ms ('' for until resumed), optionally the clock in ms since the epoch
-- (a rule test's simulated clock; '' or absent: the server's TIME), optionally who paused (shown
-- by status); with the outbox: the audit entry's id, the outbox's cap, the entry's data (JSON).
-- receiver/guards/switch_calls.py builds both forms.
-- Reply: {until-ms or -1 when the pause has no end, the entry's stream id or '' when it was not
-- queued (no outbox, or the outbox full: the pause stands either way), the time it took effect}.
-- A pause with an end is over at `until` (admit.lua compares); the key's TTL, a margin longer,
-- only collects the garbage. The entry is queued in the same step as the pause, so no pause is
-- ever in force without the record that waits to be written.
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
local until_ms = -1
local until_text = ''
if ARGV[2] == '' then
  redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'since', string.format('%.0f', now), 'until', '')
else
  until_ms = now + tonumber(ARGV[2])
  until_text = string.format('%.0f', until_ms)
  redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'since', string.format('%.0f', now),
    'until', until_text)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + GC_MARGIN_MS)
end
local queued = ''
if KEYS[2] and redis.call('XLEN', KEYS[2]) < tonumber(ARGV[6]) then
  queued = redis.call('XADD', KEYS[2], '*', 'entry', ARGV[5], 'kind', 'guards.pause',
    'at', string.format('%.0f', now), 'data', ARGV[7], 'until', until_text)
end
return {until_ms, queued, now}
