-- Takes a batch out. KEYS: active, vtime, weight, due, epoch.
-- ARGV: business, batch, refund (the records of a pick that sent nothing: their pass is given back).
local active, weights = KEYS[1], KEYS[3]
local business = ARGV[1]
local batches = 'sched:batches:' .. business
redis.call('ZREM', batches, ARGV[2])
local pass = redis.call('ZSCORE', active, business)
if redis.call('ZCARD', batches) == 0 then
  redis.call('ZREM', active, business)
elseif pass and tonumber(ARGV[3]) > 0 then
  local weight = tonumber(redis.call('HGET', weights, business) or '1')
  redis.call('ZADD', active, tonumber(pass) - tonumber(ARGV[3]) / weight, business)
end
return 1
