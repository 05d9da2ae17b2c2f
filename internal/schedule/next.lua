-- Picks the next records to feed into the queue, of one batch.
-- KEYS: active, vtime, weight, epoch, batches prefix, the queue's pending
-- list, its lease set, its paused flag.
-- ARGV[1]: how many records at most; ARGV[2]: the window (the most tasks
-- pending or active in the queue); ARGV[3]: the Unix time (seconds) after
-- which the lease of a task still worked on ends (an active task whose
-- lease ends sooner was not renewed by a live worker: a ghost, which a
-- failover of Redis can leave until Asynq recovers it, does not count).
-- Returns {"lost"} without a schedule, {} when no record waits, {"paused"}
-- when the queue is paused, {"full"} when the window has no room for a
-- whole pick, or {business,
-- batch, count, last} for a pick (last is "1" when the batch had no other
-- record to feed).
local active, vtimeKey, weights, epoch, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', epoch) == 0 then
  return {'lost'}
end
if redis.call('ZCARD', active) == 0 then
  return {}
end
if redis.call('EXISTS', KEYS[8]) == 1 then
  return {'paused'}
end
-- Full until there is room for a whole pick: at a high rate the feeder then
-- feeds many records a decision, not one for each task that ends.
local room = tonumber(ARGV[2]) - redis.call('LLEN', KEYS[6]) - redis.call('ZCOUNT', KEYS[7], ARGV[3], '+inf')
local most = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]))
if room < most then
  return {'full'}
end

-- The business with the lowest pass, its batch with the fewest records left.
for _ = 1, 100 do
  local top = redis.call('ZRANGE', active, 0, 0, 'WITHSCORES')
  if #top == 0 then
    return {}
  end
  local business, pass = top[1], tonumber(top[2])
  local batches = prefix .. business
  local batch = redis.call('ZRANGE', batches, 0, 0)[1]
  if not batch then
    redis.call('ZREM', active, business)
  else
    local left = tonumber(redis.call('ZSCORE', batches, batch))
    local count = math.max(1, math.min(most, left))
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
