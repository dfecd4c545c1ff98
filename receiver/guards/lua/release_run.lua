-- Release a lock held by one run, whatever its token: for a pass that has just ended a run
-- whose admission the store never recorded (Guards.release_run says when that is safe).
-- KEYS: lock ('<until-ms>|<token>', or the bare token an older version wrote).
-- ARGV: the run id.
-- Reply: 1 released, 0 held by another run (or not held).
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local token = string.match(value, '^%d+|(.*)$') or value
-- As admit.lua's lock_holder: the token less its last '/<hex>'.
local holder = string.match(token, '^(.*)/[0-9a-f]+$') or token
if holder ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
