-- Charges a business with work for records sent outside the schedule (the
-- retries of its records). KEYS: active, weight. ARGV: business, records.
local pass = redis.call('ZSCORE', KEYS[1], ARGV[1])
if pass then
  local weight = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '1')
  redis.call('ZADD', KEYS[1], tonumber(pass) + tonumber(ARGV[2]) / weight, ARGV[1])
end
return 1
