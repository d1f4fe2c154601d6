-- Removes every route of a push node that left the cluster, using the node's user index.
-- KEYS[1] user index of the node
-- ARGV[1] node id, ARGV[2] route key prefix, ARGV[3] how many users to purge in this call
-- Returns how many users are left to purge (call again until 0).
-- The route keys are built here from the prefix: fine on one Redis, not on Redis Cluster.
local users = redis.call('SPOP', KEYS[1], tonumber(ARGV[3]))
for _, user in ipairs(users) do
  local key = ARGV[2] .. user
  redis.call('ZREM', key, ARGV[1])
  if redis.call('ZCARD', key) == 0 then
    redis.call('DEL', key)
  end
end
return redis.call('SCARD', KEYS[1])
