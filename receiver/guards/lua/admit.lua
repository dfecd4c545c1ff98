-- Admission: run the guards in the order the caller lists them, then commit all of them.
--
-- Atomic by construction (a script blocks the server), and with no side effect on refusal:
-- every check only reads, and the commit phase runs only once every check has passed, so a
-- refused admission never consumes a cooldown, a rate slot, the budget or a lock.
-- The clock is the server's TIME, shared by every replica, unless the caller passes one (a rule
-- test's simulated clock, `remediator test`). Every expiry is decided against that clock from
-- the until-time stored with the value; key TTLs (a margin longer) only collect the garbage.
--
-- ARGV: run_id, guard count, then per guard: name, #keys, #args, args..., then optionally the
--       clock in ms since the epoch.
-- KEYS: the keys of each guard, in the same order.
-- Reply: {1, token, fence, now_ms, budget_drawn} when admitted (budget_drawn: 1 when the budget
--        was asked and this admission put the run in its window, 0 when the run was in it
--        already or the budget was not asked),
--        {0, guard, reason, retry_at_ms (-1: waiting will not help), now_ms} when refused.

local run_id = ARGV[1]
-- Set below, once the guard list is parsed and the clock argument found; the functions read it.
local now
-- Keys outlive their until-time by this much, so a clock that runs ahead of real time (a
-- simulation) still finds them; the until-time decides, the TTL only collects garbage.
local GC_MARGIN_MS = 60000

local function seconds(ms)
  return string.format('%gs', math.ceil(tonumber(ms) / 100) / 10)
end

-- A value with an end: '<until-ms>|<payload>'. A value written by an older version holds only
-- the payload and ends with its key's TTL.
local function read_until(key)
  local value = redis.call('GET', key)
  if not value then return nil end
  local until_ms, payload = string.match(value, '^(%d+)|(.*)$')
  if until_ms then
    until_ms = tonumber(until_ms)
    if until_ms <= now then return nil end
    return payload, until_ms
  end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then return value, nil end
  return value, now + ttl
end

local function write_until(key, payload, ms)
  ms = tonumber(ms)
  local until_ms = string.format('%.0f', now + ms)
  redis.call('SET', key, until_ms .. '|' .. payload, 'PX', ms + GC_MARGIN_MS)
end

-- Admission is idempotent per run id: the run's own cooldown, rate slot, budget slot and lock do
-- not refuse it (a retry after a client-side timeout, or the re-check after an approval).

-- Sliding-window log (a ZSET of run ids scored by admission time). The check only reads:
-- expired entries are trimmed at commit. A run already in the window is already counted,
-- so admitting the same run again (e.g. after its approval) does not count it twice.
local function window_check(key, max, window, what)
  local since = '(' .. string.format('%.0f', now - window)
  local mine = redis.call('ZSCORE', key, run_id)
  if mine and tonumber(mine) > now - window then return nil end
  local count = redis.call('ZCOUNT', key, since, '+inf')
  if count < max then return nil end
  -- The window frees a slot when its (count - max)-th oldest entry leaves it.
  local reason = string.format('%d %s in the last %s (max %d)', count, what, seconds(window), max)
  local oldest = redis.call('ZRANGEBYSCORE', key, since, '+inf', 'WITHSCORES', 'LIMIT', count - max, 1)
  if max <= 0 or #oldest < 2 then return reason, nil end
  return reason, tonumber(oldest[2]) + window
end

-- 1 when the run was added to the window, 0 when it was in it already.
local function window_commit(key, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now - window))
  local added = redis.call('ZADD', key, 'NX', string.format('%.0f', now), run_id)
  redis.call('PEXPIRE', key, window + GC_MARGIN_MS)
  return added
end

local checks = {}
local commits = {}

-- KEYS: pause hash {reason, since, until}. A pause with an `until` ends then.
checks.pause = function(keys, args)
  local p = redis.call('HMGET', keys[1], 'reason', 'until')
  if not p[1] then return nil end
  local reason = 'automation paused: ' .. p[1]
  if p[2] and p[2] ~= '' then
    local until_ms = tonumber(p[2])
    -- An end that is not a time (the hash edited by hand) fails closed, as the breaker's
    -- does: paused until resumed. Compared with nil it raised, and every admission failed.
    if not until_ms then
      return reason .. ' (its end, ' .. string.format('%q', string.sub(p[2], 1, 40))
        .. ', is not a time: paused until resumed)', nil
    end
    if until_ms <= now then return nil end
    return reason, until_ms
  end
  return reason, nil
end

-- ARGS: '1' if the namespace policy permits the target, the namespace. Decided by the caller
-- (pure), checked here so that the order of refusals stays the declared one.
checks.namespace = function(keys, args)
  if args[1] == '1' then return nil end
  return 'namespace ' .. args[2] .. ' is not permitted by the namespace policy', nil
end

-- KEYS: cooldown key holding '<until-ms>|<run id that started it>'. ARGS: cooldown ms.
checks.cooldown = function(keys, args)
  local holder, until_ms = read_until(keys[1])
  if not holder or holder == run_id then return nil end
  return 'in cooldown after run ' .. holder, until_ms
end
commits.cooldown = function(keys, args)
  -- The run's own cooldown is not started again by its re-admission.
  if not read_until(keys[1]) then write_until(keys[1], run_id, args[1]) end
end

-- KEYS: ZSET of this rule's admitted runs. ARGS: max runs, window ms.
checks.rate = function(keys, args)
  return window_check(keys[1], tonumber(args[1]), tonumber(args[2]), 'runs of this rule')
end
commits.rate = function(keys, args)
  window_commit(keys[1], tonumber(args[2]))
end

-- KEYS: ZSET of admitted disruptive runs, all rules. ARGS: max, window ms.
checks.budget = function(keys, args)
  return window_check(keys[1], tonumber(args[1]), tonumber(args[2]), 'disruptive actions')
end
-- Whether this admission drew a budget slot of its own (the reply's last element): a follow-up
-- of a run admitted under its id (an escalation) shares the run's slot while it is in the
-- window, and draws one once it has left it.
local budget_drawn = 0
commits.budget = function(keys, args)
  budget_drawn = window_commit(keys[1], tonumber(args[2]))
end

-- KEYS: the rule's breaker key, holding until-ms while the breaker is open.
checks.breaker = function(keys, args)
  local opened = redis.call('GET', keys[1])
  if not opened then return nil end
  local until_ms = tonumber(opened)
  if until_ms and until_ms <= now then return nil end
  return 'circuit breaker open for this rule after repeated failures', until_ms
end

-- KEYS: lock, fencing counter, the run's release mark. ARGS: token, ttl ms.
-- The lock holds '<until-ms>|<token>'. It is re-entrant for the same run: an admission that
-- timed out on the client may still have committed, and its retry must not wait out the ttl.
-- The retry gets a new token and a higher fence, so anything the earlier attempt started is
-- fenced off.
--
-- A token is '<run id>/<44 hex digits>': the first 12 are when the client issued it (ms since
-- the epoch, on its own clock), the other 32 random. An older version's token has the 32 random
-- digits only: it has no issue time, and is never compared (it re-enters as before).
--
-- An admission can reach the server long after its client gave up on it (the server hung with
-- the script in its socket buffer) and retried the run with a later token. Landing then, it must
-- not take the lock back from the retry (whose exact-token release would then leave it held to
-- the ttl), nor take it again after the retry released it. So an admission of this run issued
-- before the run's token that holds the lock, or before the last token the run released (the
-- release mark, kept for the lock's ttl), is refused: it changes nothing, and nobody is waiting
-- for its reply. Exact-token release is what keeps two runs off one target; this only decides
-- which of one run's tokens the lock keeps.
--
-- Issue times come from the replicas' clocks, which may disagree. A skewed clock can only make
-- a live admission look stale: it is refused (a refusal is never unsafe) and its run, waiting
-- for the lock, asks again with a later token, admitted once its clock passes the other token's
-- or the lock or mark expires. Skew costs time on one run's target; it never lets two runs hold
-- it. (Admitting the "stale" one without writing its token would: a late release of the token
-- the lock keeps could then free the target while that run acts.)
local TOKEN_TIME = '/(' .. string.rep('[0-9a-f]', 44) .. ')$'
local function lock_holder(token)
  return string.match(token, '^(.*)/[0-9a-f]+$') or token
end
local function issued_ms(token)
  local digits = string.match(token, TOKEN_TIME)
  return digits and tonumber(string.sub(digits, 1, 12), 16)
end
-- The fence is INCRed by the commit, after the other guards' commits, and a script's error
-- undoes nothing it wrote: a fence INCR cannot take (set by hand to text, a float or another
-- type), or a negative one (whose fence the caller reads as none), failed the admission with
-- the cooldown started, the rate and budget slots spent and the lock held, for a run that
-- never acts. So it is read here, before anything is committed.
local FENCE_DIGITS = 18  -- INCR of any integer this long stays within a signed 64-bit integer
local function fence_readable(key)
  local fence = redis.call('GET', key)
  if not fence then return end
  local digits = string.match(fence, '^(%d+)$')
  if digits and #digits <= FENCE_DIGITS then return end
  error('the target fence ' .. key .. ' holds ' .. string.format('%q', string.sub(fence, 1, 40))
    .. ', not a whole number of at most 18 digits: set it to one above every fence issued on'
    .. ' this target (the run.admitted audit rows name them), never lower', 0)
end
checks.lock = function(keys, args)
  fence_readable(keys[2])
  local token, until_ms = read_until(keys[1])
  if token and lock_holder(token) ~= run_id then
    return 'target is locked by run ' .. lock_holder(token), until_ms
  end
  local issued = issued_ms(args[1])
  if not issued then return nil end
  local held = token and issued_ms(token)
  if held and issued < held then
    return 'target is locked by a later admission of this run (' .. run_id .. '): this one'
      .. ' was issued before it (a late attempt, or a clock behind)', until_ms
  end
  local released, mark_until = nil, nil
  if keys[3] then released, mark_until = read_until(keys[3]) end
  released = released and tonumber(released)
  if released and issued < released then
    return 'this run (' .. run_id .. ') released the target after an admission issued later'
      .. ' than this one (a late attempt, or a clock behind)', mark_until
  end
  return nil
end
commits.lock = function(keys, args)
  write_until(keys[1], args[1], args[2])
  return args[1], redis.call('INCR', keys[2])
end

-- KEYS: lock. ARGS: the token the run's admission wrote. Not an admission's guard: asked with
-- the pause between a run's steps (Guards.between_steps), it only reads and commits nothing.
-- Passes while the lock still holds exactly that token; a lock gone (expired, deleted, or a
-- Redis that restarted without its data) or holding another token (another run's, or a later
-- admission of this run by another worker) refuses: the steps left must not act on a target
-- the run may no longer hold alone.
checks.held = function(keys, args)
  local token, until_ms = read_until(keys[1])
  if token == args[1] then return nil end
  if not token then
    return 'the target lock was lost: it is no longer held (it expired, or Redis lost it)', nil
  end
  return 'the target lock was lost: it is now held by run ' .. lock_holder(token), until_ms
end

-- Parse the guard list, then find the clock after it.
local plan = {}
local ki, ai = 1, 3
for i = 1, tonumber(ARGV[2]) do
  local name, nkeys, nargs = ARGV[ai], tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2])
  ai = ai + 3
  local keys, args = {}, {}
  for j = 1, nkeys do keys[j] = KEYS[ki]; ki = ki + 1 end
  for j = 1, nargs do args[j] = ARGV[ai]; ai = ai + 1 end
  if not checks[name] then return redis.error_reply('unknown guard: ' .. tostring(name)) end
  plan[i] = {name, keys, args}
end
if ARGV[ai] and ARGV[ai] ~= '' then
  now = tonumber(ARGV[ai])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A key of the wrong type or value (changed by hand) fails its check: the error names the guard
-- and its keys, for the operator to fix, and comes before any commit. A Redis error keeps its
-- code after ': ', as the caller reads outage codes there (receiver/guards/scripts.py).
local function check_failed(name, keys, err)
  if type(err) == 'table' then err = err.err or err.message end
  return redis.error_reply('the ' .. name .. ' guard cannot read its key(s) '
    .. table.concat(keys, ', ') .. ': ' .. tostring(err))
end

-- Check each in order; the first refusal wins.
for _, step in ipairs(plan) do
  local ok, reason, retry_at = pcall(checks[step[1]], step[2], step[3])
  if not ok then return check_failed(step[1], step[2], reason) end
  if reason then return {0, step[1], reason, retry_at or -1, now} end
end

-- Every guard passed: commit them all.
local token, fence = '', -1
for _, step in ipairs(plan) do
  local commit = commits[step[1]]
  if commit then
    local tok, fen = commit(step[2], step[3])
    if tok then token, fence = tok, fen end
  end
end
return {1, token, fence, now, budget_drawn}
