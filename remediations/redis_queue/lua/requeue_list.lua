-- Move up to ARGV[1] messages from the dead-letter list KEYS[1] to the work list KEYS[2].
-- Each LMOVE takes one message out and puts it in, atomically; the script runs with nothing
-- interleaved, so a consumer sees every message exactly once: in one list or the other.
--   ARGV[1] at most this many messages
--   ARGV[2] end of the dead-letter list to take from (LEFT or RIGHT: its oldest end)
--   ARGV[3] end of the work list to put them at (where producers push)
-- Returns {moved, dead letters left, work queue length}.
local limit = tonumber(ARGV[1])
local moved = 0
while moved < limit do
  if not redis.call('LMOVE', KEYS[1], KEYS[2], ARGV[2], ARGV[3]) then
    break
  end
  moved = moved + 1
end
return {moved, redis.call('LLEN', KEYS[1]), redis.call('LLEN', KEYS[2])}
