-- Unbinds a user from a push node (the user's last socket there closed, or the node was
-- evicted), deleting the route key once no node is left in it.
-- KEYS[1] route key of the user
-- ARGV[1] node id
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
end
return 1
