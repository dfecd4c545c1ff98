-- Celery (kombu's Redis transport): move up to ARGV[1] messages from the dead-letter list
-- KEYS[1] to the queue, each to the list of its priority, as kombu puts a message back
-- (kombu/transport/redis.py, Channel._do_restore_message and _q_for_pri): a message's
-- properties.priority, clamped to 0..9 (kombu/transport/virtual/base.py,
-- _get_message_priority; not a whole number: 0), rounded down to a step of 0, 3, 6, 9; step 0
-- is the queue's own key, the others <queue>\x06\x16<step>. Workers BRPOP the steps in that
-- order, so a priority-9 message moved to the queue's own key would run before every other.
-- The oldest message (the right end) first, LPUSHed as kombu publishes and rejects with
-- requeue (_restore_at_beginning). Each LMOVE takes one message out and puts it in,
-- atomically; the script runs with nothing interleaved. The message is moved unchanged (kombu
-- also marks a restored message redelivered; rewriting its JSON here could change it).
--   KEYS[1] the dead-letter list; KEYS[2..5] the queue's lists for steps 0, 3, 6, 9
--   ARGV[1] at most this many messages
-- Returns {moved, dead letters left, length of the queue's own key, moved to steps 0, 3, 6, 9}.
local limit = tonumber(ARGV[1])
local moved = 0
local by_step = {0, 0, 0, 0}
local function step_of(message)
  local ok, decoded = pcall(cjson.decode, message)
  if not ok or type(decoded) ~= 'table' or type(decoded['properties']) ~= 'table' then
    return 1
  end
  local priority = decoded['properties']['priority']
  if type(priority) == 'string' and string.match(priority, '^%s*[+-]?%d+%s*$') then
    priority = tonumber(priority)
  elseif type(priority) == 'boolean' then
    priority = priority and 1 or 0
  end
  if type(priority) ~= 'number' or priority ~= priority then
    return 1  -- as kombu: no priority, or not one int() reads (a NaN included)
  end
  -- int() truncates towards zero; the clamp makes the sign of a negative one moot.
  priority = math.max(0, math.min(9, priority >= 0 and math.floor(priority) or 0))
  return math.floor(priority / 3) + 1
end
while moved < limit do
  local message = redis.call('LINDEX', KEYS[1], -1)
  if not message then
    break
  end
  local step = step_of(message)
  redis.call('LMOVE', KEYS[1], KEYS[1 + step], 'RIGHT', 'LEFT')
  by_step[step] = by_step[step] + 1
  moved = moved + 1
end
return {moved, redis.call('LLEN', KEYS[1]), redis.call('LLEN', KEYS[2]),
        by_step[1], by_step[2], by_step[3], by_step[4]}
