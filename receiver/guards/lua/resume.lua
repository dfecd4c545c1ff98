-- Lift the pause, and queue its audit entry in the same step (receiver/guards/switch.py).
-- KEYS: pause hash, and optionally the audit outbox (a stream). ARGV, with the outbox: the
-- entry's id, the outbox's cap, the entry's data (JSON); none without (receiver/guards/
-- switch_calls.py builds both).
-- Reply: {1 when there was a pause to lift else 0, the entry's stream id or '' when it was not
-- queued (no outbox, or the outbox full: the pause is lifted either way), the time in ms since
-- the epoch}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('DEL', KEYS[1])
local queued = ''
if KEYS[2] and redis.call('XLEN', KEYS[2]) < tonumber(ARGV[2]) then
  queued = redis.call('XADD', KEYS[2], '*', 'entry', ARGV[1], 'kind', 'guards.resume',
    'at', string.format('%.0f', now), 'data', ARGV[3], 'was_paused', tostring(gone))
end
return {gone, queued, now}
