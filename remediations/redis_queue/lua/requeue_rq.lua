-- RQ: requeue up to ARGV[1] failed jobs, as rq's FailedJobRegistry.requeue does each one:
-- remove the id from the failed registry, mark the job queued (clearing its start, end and
-- failure), push the id on the queue (RPUSH: RQ workers pop from the left), and list the queue
-- in rq:queues.
-- First, what rq's FailedJobRegistry.cleanup does before it lists or counts the registry
-- (rq/registry.py): drop the ids whose score, the time the entry expires (the failure plus
-- failure_ttl, which is also the job hash's TTL), is between 0 and now. A score of -1
-- (failure_ttl=-1) never expires. Without it, ids whose job hash had expired with them piled
-- up at the head (lowest scores) and, past the ids looked at, stalled every requeue.
-- Ids not expired whose job hash is gone anyway (evicted, deleted, another job_key_prefix, or
-- a key there that is no hash) are skipped and left where they are, as rq leaves them until
-- they expire; the scan looks past them, up to MAX_SKIPPED of them, so that any number of
-- them cannot stall it either.
--   KEYS[1] the failed registry (sorted set, rq:failed:<queue>)
--   KEYS[2] the queue (list, rq:queue:<queue>)
--   KEYS[3] the set of queues (rq:queues)
--   ARGV[1] at most this many jobs
--   ARGV[2] job key prefix (rq:job:)
--   ARGV[3] enqueued_at, as RQ writes it (UTC, %Y-%m-%dT%H:%M:%S.%fZ)
--   ARGV[4] now, as rq's current_timestamp (whole seconds since the epoch, UTC)
-- Returns {moved, skipped, expired ids removed, failed left, queue length, moved ids...}.
local MAX_SKIPPED = 10000
local limit = tonumber(ARGV[1])
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[4])
local moved, skipped = {}, 0
-- Lowest score first: the oldest failures come first. The ids before rank `skipped` are the
-- ones skipped so far (every id looked at is either moved, and so removed, or skipped).
while #moved < limit and skipped < MAX_SKIPPED do
  local ids = redis.call('ZRANGE', KEYS[1], skipped, skipped + (limit - #moved) - 1)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    local job = ARGV[2] .. id
    -- A hash, not merely a key: the id leaves the registry before its job is written, so
    -- a job key of another type (another program's, under a job_key_prefix that is not
    -- RQ's) would fail the HSET with the id out of the registry and on no queue, lost.
    if redis.call('TYPE', job)['ok'] == 'hash' then
      redis.call('ZREM', KEYS[1], id)
      redis.call('HSET', job, 'status', 'queued', 'enqueued_at', ARGV[3],
                 'started_at', '', 'ended_at', '')
      redis.call('HDEL', job, 'exc_info')
      redis.call('RPUSH', KEYS[2], id)
      table.insert(moved, id)
    else
      skipped = skipped + 1
    end
  end
end
if #moved > 0 then
  redis.call('SADD', KEYS[3], KEYS[2])
end
local out = {#moved, skipped, expired, redis.call('ZCARD', KEYS[1]), redis.call('LLEN', KEYS[2])}
for _, id in ipairs(moved) do
  table.insert(out, id)
end
return out
