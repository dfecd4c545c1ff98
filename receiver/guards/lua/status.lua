-- What `status` reads first, in one round trip: the clock and the pause. Read on the server that
-- holds the guards' keys (on a cluster, the master of their slot, whose clock the admissions
-- decide with; a cluster refuses TIME in a pipeline, since TIME has no key to route by).
-- KEYS: pause hash. Reply: {seconds, microseconds, the pause hash as a flat field/value list}.
local t = redis.call('TIME')
return {t[1], t[2], redis.call('HGETALL', KEYS[1])}
