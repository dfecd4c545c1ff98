-- Streams: re-add up to ARGV[4] entries that the consumer group ARGV[1] was given but has not
-- acknowledged for ARGV[3] milliseconds (their consumer is presumed gone). Each entry is
-- claimed (XAUTOCLAIM, to ARGV[2]), added again at the end of the stream with the same fields
-- (so any consumer of the group reads it like a new one), and acknowledged: all in one script,
-- so no consumer can claim or acknowledge it halfway. Entries deleted from the stream while
-- pending are acknowledged and counted as gone.
--
-- One call examines at most ARGV[6] pending entries, from the cursor ARGV[5] ('0-0' at the
-- start): XAUTOCLAIM looks at up to ten entries per entry asked for (COUNT; t_stream.c,
-- Redis 7), so the script asks for no more than the budget allows. A script blocks every other
-- client of the server while it runs: unbounded, a group with 1,000,000 entries pending and
-- none idle kept Redis busy for seconds (past its 5 s busy threshold, other clients get BUSY).
-- The caller calls again from the returned cursor, letting other clients in between.
--   KEYS[1] the stream
-- Returns {re-added, gone, still pending in the group, next cursor ('0-0': the group's pending
-- entries were all examined), old id, new id, old id, new id, ...}.
local limit = tonumber(ARGV[4])
local budget = tonumber(ARGV[6])
local cursor = ARGV[5]
local pairs_out, gone, stranded = {}, 0, 0
local readded, examined = 0, 0
while readded < limit and examined < budget do
  local count = math.min(limit - readded, math.max(1, math.floor((budget - examined) / 10)))
  local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,
                           'COUNT', count)
  examined = examined + count * 10
  cursor = reply[1]
  -- Redis 6.2 answers a deleted entry with a nil (false here) in its place, claimed all the
  -- same and left pending under the claiming consumer, with no id to acknowledge it by:
  -- those are acknowledged below, from the consumer's own list. Indexed, it raised, and the
  -- move failed on any group whose idle entries had been trimmed.
  for i = 1, #reply[2] do
    local entry = reply[2][i]
    if entry and entry[2] then
      local id = entry[1]
      local new_id = redis.call('XADD', KEYS[1], '*', unpack(entry[2]))
      table.insert(pairs_out, id)
      table.insert(pairs_out, new_id)
      readded = readded + 1
      redis.call('XACK', KEYS[1], ARGV[1], id)
    elseif entry then
      gone = gone + 1  -- an id with no fields: deleted
      redis.call('XACK', KEYS[1], ARGV[1], entry[1])
    else
      stranded = stranded + 1
    end
  end
  if reply[3] then
    gone = gone + #reply[3]  -- Redis 7 lists deleted entries apart (already out of the PEL)
  end
  if cursor == '0-0' then
    break
  end
end
-- Redis 6.2's deleted entries, claimed by this consumer and left pending: what it holds that
-- no longer exists is acknowledged and counted gone (an entry that exists is never held by it
-- past the step that re-added and acknowledged it).
if stranded > 0 then
  local held_ids = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', stranded, ARGV[2])
  for _, held in ipairs(held_ids) do
    if #redis.call('XRANGE', KEYS[1], held[1], held[1], 'COUNT', 1) == 0 then
      redis.call('XACK', KEYS[1], ARGV[1], held[1])
      gone = gone + 1
    end
  end
end
-- The claiming consumer holds nothing now; remove it so it does not linger in XINFO.
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])[1]
local out = {readded, gone, pending, cursor}
for _, id in ipairs(pairs_out) do
  table.insert(out, id)
end
return out
