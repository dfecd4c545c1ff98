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
local pairs_out, gone = {}, 0
local readded, examined = 0, 0
while readded < limit and examined < budget do
  local count = math.min(limit - readded, math.max(1, math.floor((budget - examined) / 10)))
  local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,
                           'COUNT', count)
  examined = examined + count * 10
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do
    local id, fields = entry[1], entry[2]
    if fields then
      local new_id = redis.call('XADD', KEYS[1], '*', unpack(fields))
      table.insert(pairs_out, id)
      table.insert(pairs_out, new_id)
      readded = readded + 1
    else
      gone = gone + 1  -- Redis 6.2 answers a deleted entry with no fields
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
  if reply[3] then
    gone = gone + #reply[3]  -- Redis 7 lists deleted entries apart (already out of the PEL)
  end
  if cursor == '0-0' then
    break
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
