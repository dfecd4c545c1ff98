-- Prepended to count_rq.lua and requeue_rq.lua (requeue.py, _rq_lua): why a failed job is not
-- moved, one answer for both, so that a dry run counts what a live run moves.
-- rq_skip(job, origin): nil when the job at key `job` moves to the queue named `origin`, else
--   'gone': no job hash (evicted, deleted, another job_key_prefix, or a key there that is no
--     hash: the id leaves the registry before its job is written, so a key of another type
--     would fail the HSET with the id out of the registry and on no queue, lost); rq leaves
--     such ids until they expire.
--   'elsewhere': the job's origin is another queue. RQ requeues a job to its origin,
--     whichever registry holds its id; the step acts on its configured queue only, so such a
--     job is left for RQ's own requeue (`rq requeue --queue`), not put on a queue the step was
--     not configured and approved for, nor on this one, where RQ would not put it.
--   'limited': the job has a rate_limit_key (RQ 3): RQ requeues it through its rate limit
--     registry, to wait for a free slot; pushed on the queue it would run past the limit.
local function rq_skip(job, origin)
  if redis.call('TYPE', job)['ok'] ~= 'hash' then
    return 'gone'
  elseif redis.call('HGET', job, 'origin') ~= origin then
    return 'elsewhere'
  elseif (redis.call('HGET', job, 'rate_limit_key') or '') ~= '' then
    return 'limited'
  end
  return nil
end
