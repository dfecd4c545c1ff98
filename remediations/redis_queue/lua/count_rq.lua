-- RQ, read only (a dry run): how many failed jobs requeue_rq.lua would move now, chosen as it
-- chooses them, so that a dry run says what a live run would do. It counts what the move looks
-- at: the ids not expired (score -1, or after now: the move drops the expired ones, scored from
-- 0 to now, first), lowest score first, in batches of what is still wanted, a job moving when
-- it would move (its hash exists, its origin is this queue, it has no rate limit) and skipped
-- otherwise, until the cap is met, the ids run out, or MAX_SKIPPED ids were skipped. Nothing
-- is written.
--   KEYS[1] the failed registry (sorted set, rq:failed:<queue>)
--   ARGV[1] at most this many jobs (the cap, or one past it to tell that more wait)
--   ARGV[2] job key prefix (rq:job:)
--   ARGV[3] now, as rq's current_timestamp (whole seconds since the epoch, UTC)
--   ARGV[4] the queue's name, as a job's origin names it
-- Returns {would move, gone, elsewhere, rate limited}: rq_job.lua's reasons to skip.
local MAX_SKIPPED = 10000  -- as requeue_rq.lua's
local limit = tonumber(ARGV[1])
-- The ids the move sees once the expired ones are gone: ranks below `below` (scores under 0),
-- then the ranks past the `expired` ones.
local below = redis.call('ZCOUNT', KEYS[1], '-inf', '(0')
local expired = redis.call('ZCOUNT', KEYS[1], 0, ARGV[3])
local function ids(from, to)
  local out = {}
  if from < below then
    out = redis.call('ZRANGE', KEYS[1], from, math.min(to, below - 1))
  end
  if to >= below then
    local rest = redis.call('ZRANGE', KEYS[1], math.max(from, below) + expired, to + expired)
    for _, id in ipairs(rest) do
      table.insert(out, id)
    end
  end
  return out
end
local movable = 0
local skips = {gone = 0, elsewhere = 0, limited = 0}
local skipped = 0
while movable < limit and skipped < MAX_SKIPPED do
  -- Nothing moves here, so the move's next rank (`skipped`, the moved ids being gone) is
  -- this one: every id looked at so far.
  local from = movable + skipped
  local batch = ids(from, from + (limit - movable) - 1)
  if #batch == 0 then
    break
  end
  for _, id in ipairs(batch) do
    local why = rq_skip(ARGV[2] .. id, ARGV[4])
    if why then
      skips[why] = skips[why] + 1
      skipped = skipped + 1
      if skipped >= MAX_SKIPPED then
        break  -- not at the batch's end: the dry run's batches (cap + 1) are not the move's
      end
    else
      movable = movable + 1
    end
  end
end
return {movable, skips.gone, skips.elsewhere, skips.limited}
