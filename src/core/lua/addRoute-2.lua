-- Binds a user to a push node until ARGV[3] + ARGV[4], dropping the user's expired bindings.
-- KEYS[1] route key of the user, KEYS[2] user index of the node
-- ARGV[1] node id, ARGV[2] user id, ARGV[3] now (ms), ARGV[4] ttl (ms)
local now = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
