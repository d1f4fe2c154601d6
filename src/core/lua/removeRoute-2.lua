-- Unbinds a user from a push node (the user's last socket there closed).
-- KEYS[1] route key of the user, KEYS[2] user index of the node
-- ARGV[1] node id, ARGV[2] user id
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
end
return 1
