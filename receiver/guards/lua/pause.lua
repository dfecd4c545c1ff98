-- Pause all automation, for a while or until resumed (the key is deleted to resume).
-- KEYS: pause hash. ARGV: reason, duration ms ('' for until resumed).
-- Reply: until-ms, or -1 when the pause has no end.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('DEL', KEYS[1])
if ARGV[2] == '' then
  redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'since', now, 'until', '')
  return -1
end
local until_ms = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'since', now, 'until', until_ms)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return until_ms
