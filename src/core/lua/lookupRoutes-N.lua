-- The live nodes of many users in one call: for each route key, the members whose
-- binding has not expired.
-- KEYS[1..N] route keys of the users
-- ARGV[1] now (ms)
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZRANGEBYSCORE', key, ARGV[1], '+inf')
end
return out
