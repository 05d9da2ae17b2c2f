-- Hands out the next records, of one batch. KEYS: active, vtime, weight, due, epoch.
-- ARGV[1]: now, Unix milliseconds; ARGV[2]: how many records at most.
-- Returns {"lost"} without a schedule, {business, batch, count, last} for a
-- pick (last is "1" when the batch had no other record to hand out), {due}
-- (the first retry's time) when nothing may be sent now, or {} when nothing waits.
local active, vtimeKey, weights, due, epoch = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', epoch) == 0 then
  return {'lost'}
end
local vtime = tonumber(redis.call('GET', vtimeKey) or '0')

-- Records whose retry is due go back to their batches; a business that had
-- no work joins at the virtual time.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', ARGV[1], 'LIMIT', 0, 100)) do
  redis.call('ZREM', due, member)
  local business, batch = string.match(member, '^(%S+) (%S+)')
  redis.call('ZINCRBY', 'sched:batches:' .. business, 1, batch)
  if not redis.call('ZSCORE', active, business) then
    redis.call('ZADD', active, vtime, business)
  end
end

-- The business with the lowest pass, its batch with the fewest records left.
for _ = 1, 100 do
  local top = redis.call('ZRANGE', active, 0, 0, 'WITHSCORES')
  if #top == 0 then
    local first = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
    if #first == 0 then
      return {}
    end
    return {first[2]}
  end
  local business, pass = top[1], tonumber(top[2])
  local batches = 'sched:batches:' .. business
  local batch = redis.call('ZRANGE', batches, 0, 0)[1]
  if not batch then
    redis.call('ZREM', active, business)
  else
    local left = tonumber(redis.call('ZSCORE', batches, batch))
    local count = math.max(1, math.min(tonumber(ARGV[2]), left))
    local last = '0'
    if left - count <= 0 then
      redis.call('ZREM', batches, batch)
      last = '1'
    else
      redis.call('ZINCRBY', batches, -count, batch)
    end
    redis.call('SET', vtimeKey, pass)
    if redis.call('ZCARD', batches) == 0 then
      redis.call('ZREM', active, business)
    else
      local weight = tonumber(redis.call('HGET', weights, business) or '1')
      redis.call('ZADD', active, pass + count / weight, business)
    end
    return {business, batch, tostring(count), last}
  end
end
return {}
