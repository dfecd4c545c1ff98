-- Admission: run the guards in the order the caller lists them, then commit all of them.
--
-- Atomic by construction (a script blocks the server), and with no side effect on refusal:
-- every check only reads, and the commit phase runs only once every check has passed, so a
-- refused admission never consumes a cooldown, a rate slot, the budget or a lock.
-- The only clock is the server's TIME, shared by every replica.
--
-- ARGV: run_id, guard count, then per guard: name, #keys, #args, args...
-- KEYS: the keys of each guard, in the same order.
-- Reply: {1, token, fence, now_ms} when admitted,
--        {0, guard, reason, retry_at_ms (-1: waiting will not help), now_ms} when refused.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local run_id = ARGV[1]

local function remaining_ms(key)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then return nil end
  return ttl
end

local function seconds(ms)
  return string.format('%gs', math.ceil(tonumber(ms) / 100) / 10)
end

-- Admission is idempotent per run id: the run's own cooldown, rate slot, budget slot and lock do
-- not refuse it (a retry after a client-side timeout, or the re-check after an approval).

-- Sliding-window log (a ZSET of run ids scored by admission time). The check only reads:
-- expired entries are trimmed at commit. A run already in the window is already counted,
-- so admitting the same run again (e.g. after its approval) does not count it twice.
local function window_check(key, max, window, what)
  local since = '(' .. (now - window)
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

local function window_commit(key, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  redis.call('ZADD', key, 'NX', now, run_id)
  redis.call('PEXPIRE', key, window)
end

local checks = {}
local commits = {}

-- KEYS: pause hash {reason, since, until}. It expires by itself at `until` when one is set.
checks.pause = function(keys, args)
  local p = redis.call('HMGET', keys[1], 'reason', 'until')
  if not p[1] then return nil end
  local reason = 'automation paused: ' .. p[1]
  if p[2] and p[2] ~= '' then return reason, tonumber(p[2]) end
  return reason, nil
end

-- ARGS: '1' if the namespace policy permits the target, the namespace. Decided by the caller
-- (pure), checked here so that the order of refusals stays the declared one.
checks.namespace = function(keys, args)
  if args[1] == '1' then return nil end
  return 'namespace ' .. args[2] .. ' is not permitted by the namespace policy', nil
end

-- KEYS: cooldown key holding the run id that started it. ARGS: cooldown ms.
checks.cooldown = function(keys, args)
  local holder = redis.call('GET', keys[1])
  if not holder or holder == run_id then return nil end
  local ttl = remaining_ms(keys[1])
  local reason = 'in cooldown after run ' .. holder
  if not ttl then return reason, nil end
  return reason, now + ttl
end
commits.cooldown = function(keys, args)
  redis.call('SET', keys[1], run_id, 'NX', 'PX', args[1])
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
commits.budget = function(keys, args)
  window_commit(keys[1], tonumber(args[2]))
end

-- KEYS: the rule's breaker key, present (holding until-ms) while the breaker is open.
checks.breaker = function(keys, args)
  local opened = redis.call('GET', keys[1])
  if not opened then return nil end
  local reason = 'circuit breaker open for this rule after repeated failures'
  local ttl = remaining_ms(keys[1])
  if not ttl then return reason, nil end
  return reason, now + ttl
end

-- KEYS: lock, fencing counter. ARGS: token ('<run id>/<random hex>'), ttl ms.
-- The lock is re-entrant for the same run: an admission that timed out on the client may still
-- have committed, and its retry must not wait out the ttl. The retry gets a new token and a
-- higher fence, so anything the earlier attempt started is fenced off.
local function lock_holder(value)
  return string.match(value, '^(.*)/[0-9a-f]+$') or value
end
checks.lock = function(keys, args)
  local holder = redis.call('GET', keys[1])
  if not holder or lock_holder(holder) == run_id then return nil end
  local reason = 'target is locked by run ' .. lock_holder(holder)
  local ttl = remaining_ms(keys[1])
  if not ttl then return reason, nil end
  return reason, now + ttl
end
commits.lock = function(keys, args)
  redis.call('SET', keys[1], args[1], 'PX', args[2])
  return args[1], redis.call('INCR', keys[2])
end

-- Parse the guard list and check each in order; the first refusal wins.
local plan = {}
local ki, ai = 1, 3
for i = 1, tonumber(ARGV[2]) do
  local name, nkeys, nargs = ARGV[ai], tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2])
  ai = ai + 3
  local keys, args = {}, {}
  for j = 1, nkeys do keys[j] = KEYS[ki]; ki = ki + 1 end
  for j = 1, nargs do args[j] = ARGV[ai]; ai = ai + 1 end
  local check = checks[name]
  if not check then return redis.error_reply('unknown guard: ' .. tostring(name)) end
  local reason, retry_at = check(keys, args)
  if reason then return {0, name, reason, retry_at or -1, now} end
  plan[i] = {name, keys, args}
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
return {1, token, fence, now}
