-- The live nodes of many users in one call: for each route key, the members whose
-- binding has not expired by Redis's own clock.
-- KEYS[1..N] route keys of the users
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZRANGEBYSCORE', key, now, '+inf')
end
return out
