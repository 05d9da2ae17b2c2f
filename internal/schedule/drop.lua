-- Takes a batch out. KEYS: active, weight, batches prefix.
-- ARGV: business, batch, refund (the records of a pick that fed nothing: their pass is given back).
local active, weights = KEYS[1], KEYS[2]
local business = ARGV[1]
local batches = KEYS[3] .. business
redis.call('ZREM', batches, ARGV[2])
local pass = redis.call('ZSCORE', active, business)
if redis.call('ZCARD', batches) == 0 then
  redis.call('ZREM', active, business)
elseif pass and tonumber(ARGV[3]) > 0 then
  local weight = tonumber(redis.call('HGET', weights, business) or '1')
  redis.call('ZADD', active, tonumber(pass) - tonumber(ARGV[3]) / weight, business)
end
return 1
