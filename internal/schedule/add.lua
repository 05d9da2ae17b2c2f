-- Adds records of a batch. KEYS: active, vtime, weight, batches prefix.
-- ARGV: business, batch, records, weight (0: keep the one known), wake channel.
local active, vtimeKey, weights, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local business = ARGV[1]
redis.call('ZINCRBY', prefix .. business, ARGV[3], ARGV[2])
if tonumber(ARGV[4]) > 0 then
  redis.call('HSET', weights, business, ARGV[4])
end
if not redis.call('ZSCORE', active, business) then
  redis.call('ZADD', active, tonumber(redis.call('GET', vtimeKey) or '0'), business)
end
redis.call('PUBLISH', ARGV[5], '')
return 1
