-- RQ: requeue up to ARGV[1] failed jobs, as rq's FailedJobRegistry.requeue does each one
-- (rq/registry.py, then Queue._enqueue_job and Job.save/cleanup in rq/queue.py, rq/job.py):
-- remove the id from the failed registry, mark the job queued (a new enqueued_at, its start,
-- end and failure cleared; a job with a ttl gets it again as its hash's expiry, as
-- Job.cleanup(ttl) does), push the id on the queue (RPUSH: RQ workers pop from the left), and
-- list the queue in <prefix>:queues.
-- First, what rq's FailedJobRegistry.cleanup does before it lists or counts the registry
-- (rq/registry.py): drop the ids whose score, the time the entry expires (the failure plus
-- failure_ttl, which is also the job hash's TTL), is between 0 and now. A score of -1
-- (failure_ttl=-1) never expires. Without it, ids whose job hash had expired with them piled
-- up at the head (lowest scores) and, past the ids looked at, stalled every requeue.
-- Ids not moved (rq_job.lua's rq_skip: gone, elsewhere, rate limited) are left where they are,
-- and the scan looks past them, up to MAX_SKIPPED of them, so that any number of them cannot
-- stall it.
--   KEYS[1] the failed registry (sorted set, <prefix>:failed:<queue>)
--   KEYS[2] the queue (list, <prefix>:queue:<queue>)
--   KEYS[3] the set of queues (<prefix>:queues)
--   ARGV[1] at most this many jobs
--   ARGV[2] job key prefix (rq:job:)
--   ARGV[3] enqueued_at, as RQ writes it (UTC, %Y-%m-%dT%H:%M:%S.%fZ)
--   ARGV[4] now, as rq's current_timestamp (whole seconds since the epoch, UTC)
--   ARGV[5] the queue's name, as a job's origin names it
-- Returns {moved, gone, elsewhere, rate limited, expired ids removed, failed left, queue
-- length, moved ids...}.
local MAX_SKIPPED = 10000
local limit = tonumber(ARGV[1])
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[4])
local moved = {}
local skips = {gone = 0, elsewhere = 0, limited = 0}
local skipped = 0
-- Lowest score first: the oldest failures come first. The ids before rank `skipped` are the
-- ones skipped so far (every id looked at is either moved, and so removed, or skipped).
while #moved < limit and skipped < MAX_SKIPPED do
  local ids = redis.call('ZRANGE', KEYS[1], skipped, skipped + (limit - #moved) - 1)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    local job = ARGV[2] .. id
    local why = rq_skip(job, ARGV[5])
    if why then
      skips[why] = skips[why] + 1
      skipped = skipped + 1
      if skipped >= MAX_SKIPPED then
        break  -- not at the batch's end: the dry run's batches (cap + 1) are not the move's
      end
    else
      redis.call('ZREM', KEYS[1], id)
      redis.call('HSET', job, 'status', 'queued', 'enqueued_at', ARGV[3],
                 'started_at', '', 'ended_at', '')
      redis.call('HDEL', job, 'exc_info')
      local ttl = tonumber(redis.call('HGET', job, 'ttl') or '')
      if ttl and ttl > 0 then
        redis.call('EXPIRE', job, ttl)
      end
      redis.call('RPUSH', KEYS[2], id)
      table.insert(moved, id)
    end
  end
end
if #moved > 0 then
  redis.call('SADD', KEYS[3], KEYS[2])
end
local out = {#moved, skips.gone, skips.elsewhere, skips.limited, expired, redis.call('ZCARD', KEYS[1]),
             redis.call('LLEN', KEYS[2])}
for _, id in ipairs(moved) do
  table.insert(out, id)
end
return out
