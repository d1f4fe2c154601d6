-- The live nodes of one user: the members whose binding has not expired by Redis's own
-- clock. Callers pipeline one call per user, grouped by the shard serving each key.
-- KEYS[1] route key of the user
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
