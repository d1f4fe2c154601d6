-- Binds a user to a push node for ARGV[2] ms from now, by Redis's own clock (so nodes
-- whose clocks differ agree on every expiry), dropping the user's expired bindings.
-- Returns 1 when the user had no live binding to this node before (a new binding, or one
-- that had lapsed or been removed), else 0: the node replays to users it binds anew.
-- One key, so it runs on Redis Cluster; the node's user index is written by its own command.
-- KEYS[1] route key of the user
-- ARGV[1] node id, ARGV[2] ttl (ms)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local before = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl)
if before and tonumber(before) > now then
  return 0
end
return 1
