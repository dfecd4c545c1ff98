-- RQ: requeue up to ARGV[1] failed jobs, as rq's FailedJobRegistry.requeue does each one:
-- remove the id from the failed registry, mark the job queued (clearing its start, end and
-- failure), push the id on the queue (RPUSH: RQ workers pop from the left), and list the queue
-- in rq:queues. Ids whose job hash is gone (expired) are skipped and left where they are.
--   KEYS[1] the failed registry (sorted set, rq:failed:<queue>)
--   KEYS[2] the queue (list, rq:queue:<queue>)
--   KEYS[3] the set of queues (rq:queues)
--   ARGV[1] at most this many jobs
--   ARGV[2] job key prefix (rq:job:)
--   ARGV[3] enqueued_at, as RQ writes it (UTC, %Y-%m-%dT%H:%M:%S.%fZ)
-- Returns {moved, skipped, failed left, queue length, moved ids...}.
local limit = tonumber(ARGV[1])
-- Lowest score first: the score is when the entry expires, so the oldest failures come first.
-- Look a little past the limit so that a few expired ids do not stall the move.
local ids = redis.call('ZRANGE', KEYS[1], 0, limit + 99)
local moved, skipped = {}, 0
for _, id in ipairs(ids) do
  if #moved >= limit then
    break
  end
  local job = ARGV[2] .. id
  if redis.call('EXISTS', job) == 1 then
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
if #moved > 0 then
  redis.call('SADD', KEYS[3], KEYS[2])
end
local out = {#moved, skipped, redis.call('ZCARD', KEYS[1]), redis.call('LLEN', KEYS[2])}
for _, id in ipairs(moved) do
  table.insert(out, id)
end
return out
