-- The live push nodes of many users at once, by Redis's clock: one round trip for a whole
-- batch. Standalone Redis only (the keys span hash slots); a Redis Cluster is asked with a
-- pipeline per shard instead.
-- KEYS[1..n] route keys of the users (a sorted set: node id scored by its expiry, ms)
-- Returns, for each key, the ids of the nodes whose binding has not expired.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local live = {}
for i, key in ipairs(KEYS) do
  live[i] = redis.call('ZRANGEBYSCORE', key, now, '+inf')
end
return live
