-- Refusal digests: the windows in which a rule's refusals to one channel are folded, and the
-- digests of the windows that ended, each claimed by one sender at a time.
--
-- One script, four operations (ARGV[1]); each is atomic (a script blocks the server), so two
-- replicas never both open a window, never both count a refusal, and never both claim a digest.
-- The clock is the server's TIME unless the caller passes one (ARGV[2], ms since the epoch; ''
-- for TIME), as in admit.lua; key TTLs only collect the garbage.
--
-- Keys (every one under the guards' prefix, so one hash slot on Redis Cluster):
--   open     HASH  the window of (rule, channel): start, end (ms), rule, channel, opener (the run
--                  whose refusal was sent on its own), by:<guard> (runs folded, by guard),
--                  x:<n> (the first few targets, as examples)
--   targets  SET   a hash of each target folded (how many distinct targets)
--   runs     SET   the run ids folded (a retried refusal is counted once)
--   due      ZSET  'rule:channel' of each open window, scored by its end
--   closed   ZSET  the digests to send (JSON), scored by when one may claim it: now for one
--                  nobody claimed; for a claimed one, when its lease ends (another replica
--                  retakes it then if its sender died)
--
-- fold  KEYS open, targets, runs, due, closed
--       ARGV op, now, window_ms, gc_ms, rule, channel, run_id, guard, target_hash, example,
--            max_examples
--   -> {1, start_ms, end_ms}: folded into the open window (not to be sent on its own)
--      {0, start_ms, end_ms}: to be sent on its own; it opened this window (an ended window of
--      the same rule and channel is closed first, its digest claimable at once)
-- close KEYS open, targets, runs, due, closed
--       ARGV op, now, gc_ms, member
--   -> 1 when the window had ended and folded something: its digest is queued in `closed`,
--      claimable at once (by `take`, one digest at a time: a sender claims only the one it is
--      about to send); false when it has not ended, was closed already, or folded nothing
--      (closed all the same, with no digest)
-- take  KEYS closed       ARGV op, now, lease_ms, busy channel...
--   -> one digest whose lease ended (or that nobody claimed yet), claimed until now + lease_ms,
--      not to one of the busy channels (the caller is sending to them: it sends one digest to
--      a channel at a time, and every other channel's side by side); the first TAKE_SCAN
--      claimable ones are looked at; false when none of them will do
-- done  KEYS closed       ARGV op, now (unused), digest
--   -> 1 when the digest was still there, 0 otherwise

local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(value)
  return string.format('%.0f', value)
end

-- The window of KEYS[1..3] as a digest, removed; queued in KEYS[5] claimable from `from_ms`.
-- Returns the digest's JSON, or false when the window folded nothing.
local function close(member, from_ms, gc_ms)
  local fields = redis.call('HGETALL', KEYS[1])
  local refused = redis.call('SCARD', KEYS[3])
  local targets = redis.call('SCARD', KEYS[2])
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[4], member)
  if #fields == 0 or refused == 0 then return false end
  local digest = {by_guard = {}, examples = {}, refused = refused, targets = targets}
  local examples = {}
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if string.sub(name, 1, 3) == 'by:' then
      digest.by_guard[string.sub(name, 4)] = tonumber(value)
    elseif string.sub(name, 1, 2) == 'x:' then
      examples[tonumber(string.sub(name, 3))] = value
    else
      digest[name] = value
    end
  end
  for i = 1, #examples do
    if examples[i] then table.insert(digest.examples, examples[i]) end
  end
  local json = cjson.encode(digest)
  redis.call('ZADD', KEYS[5], ms(from_ms), json)
  redis.call('PEXPIRE', KEYS[5], gc_ms)
  return json
end

if op == 'fold' then
  local window_ms, gc_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
  local rule, channel, run_id, guard = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local target_hash, example, max_examples = ARGV[9], ARGV[10], tonumber(ARGV[11])
  local member = rule .. ':' .. channel
  local start = redis.call('HGET', KEYS[1], 'start')
  if start then
    local ends = redis.call('HGET', KEYS[1], 'end')
    if now < tonumber(ends) then
      -- The refusal that opened the window, asked again (its event retried): sent on its own.
      if redis.call('HGET', KEYS[1], 'opener') == run_id then return {0, start, ends} end
      if redis.call('SADD', KEYS[3], run_id) == 1 then
        redis.call('HINCRBY', KEYS[1], 'by:' .. guard, 1)
        if redis.call('SADD', KEYS[2], target_hash) == 1 then
          local seen = redis.call('SCARD', KEYS[2])
          if seen <= max_examples then redis.call('HSET', KEYS[1], 'x:' .. seen, example) end
        end
        local ttl = redis.call('PTTL', KEYS[1])
        redis.call('PEXPIRE', KEYS[2], ttl)
        redis.call('PEXPIRE', KEYS[3], ttl)
      end
      return {1, start, ends}
    end
    -- Ended, and no sender has closed it yet: its digest goes out (claimable at once), and
    -- this refusal opens the next window.
    close(member, now, gc_ms)
  end
  local ends = now + window_ms
  redis.call('HSET', KEYS[1], 'start', ms(now), 'end', ms(ends), 'rule', rule,
             'channel', channel, 'opener', run_id)
  redis.call('PEXPIRE', KEYS[1], window_ms + gc_ms)
  redis.call('ZADD', KEYS[4], ms(ends), member)
  redis.call('PEXPIRE', KEYS[4], window_ms + gc_ms)
  return {0, ms(now), ms(ends)}
end

if op == 'close' then
  local gc_ms, member = tonumber(ARGV[3]), ARGV[4]
  local ends = redis.call('HGET', KEYS[1], 'end')
  if ends and now < tonumber(ends) then return false end
  -- Ended, or gone (its TTL passed): either way no longer due. Queued, not claimed: a claim
  -- starts when its sender is about to send it, or a digest queued behind a slow send would
  -- spend its lease waiting (and be taken again by another replica while still to be sent).
  if close(member, now, gc_ms) then return 1 end
  return false
end

-- How many claimable digests one take looks at for one whose channel is not busy.
local TAKE_SCAN = 256

if op == 'take' then
  local lease_ms = tonumber(ARGV[3])
  local busy = {}
  for i = 4, #ARGV do busy[ARGV[i]] = true end
  local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms(now), 'LIMIT', 0, TAKE_SCAN)
  for _, member in ipairs(found) do
    -- An entry that is no digest has no channel: taken, for its sender to drop.
    local ok, digest = pcall(cjson.decode, member)
    local channel = ok and type(digest) == 'table' and digest.channel or nil
    if not (channel and busy[channel]) then
      redis.call('ZADD', KEYS[1], 'XX', ms(now + lease_ms), member)
      return member
    end
  end
  return false
end

if op == 'done' then
  return redis.call('ZREM', KEYS[1], ARGV[3])
end

return redis.error_reply('digest.lua: unknown operation ' .. tostring(op))
