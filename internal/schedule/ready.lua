-- Tells whether a record may be sent now. KEYS: active, vtime, weight, due, epoch.
-- ARGV[1]: now, Unix milliseconds. Returns "lost" without a schedule, "now"
-- when a business has work or a retry is due, the first retry's time when
-- one waits, or "" when nothing does.
local active, due, epoch = KEYS[1], KEYS[4], KEYS[5]
if redis.call('EXISTS', epoch) == 0 then
  return 'lost'
end
if redis.call('ZCARD', active) > 0 then
  return 'now'
end
local first = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
if #first == 0 then
  return ''
end
if tonumber(first[2]) <= tonumber(ARGV[1]) then
  return 'now'
end
return first[2]
