-- Wavecast frequency caps. One script, two operations, each one atomic EVALSHA for a batch of
-- devices: two campaigns racing for a device's last slot are serialised here, and only the
-- first takes it.
--
-- The decision is app/timing/caps.py `admits`, entry for entry: the tests compare the two.
-- Instants are the caller's (epoch seconds), so the tests can replay any history; numbers are
-- written with %.17g, which round-trips an IEEE double exactly.
--
-- Keys, one per device (KEYS, any number):
--   {prefix}:{device}  sorted set  member = campaign id, score = when it took its slot.
--                      Holds only slots inside the window (<= count of them); expires a window
--                      after its newest slot, and an expiry is never shortened.
--
-- ARGV[1] selects the operation:
--   take       ARGV: campaign, count, window_seconds, now  -> {1 | 0 per key}
--              1: the campaign holds a slot for the device (taken now, or already held
--              within the window: a retry takes no second one); 0: the device is capped.
--   give_back  ARGV: campaign                              -> {1 | 0 per key: a slot was freed}

local function fmt(x)
  return string.format('%.17g', x)
end

local op = ARGV[1]

if op == 'take' then
  local campaign = ARGV[2]
  local count = tonumber(ARGV[3])
  local window = tonumber(ARGV[4])
  local now = tonumber(ARGV[5])
  local since = now - window
  local out = {}
  for i, key in ipairs(KEYS) do
    -- Slots at or before `since` no longer count. Slots after `now` do: a worker whose clock
    -- runs ahead took them, and the cap holds across workers.
    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(since))
    if redis.call('ZSCORE', key, campaign) then
      out[i] = 1
    elseif redis.call('ZCARD', key) < count then
      redis.call('ZADD', key, fmt(now), campaign)
      local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
      local expiry = math.ceil((newest - since) * 1000)
      local current = redis.call('PTTL', key)
      -- -1: no expiry yet. A campaign with a shorter window never cuts short the expiry a
      -- longer one needs.
      if current == -1 or current < expiry then
        redis.call('PEXPIRE', key, string.format('%.0f', expiry))
      end
      out[i] = 1
    else
      out[i] = 0
    end
  end
  return out
end

if op == 'give_back' then
  local out = {}
  for i, key in ipairs(KEYS) do
    out[i] = redis.call('ZREM', key, ARGV[2])
  end
  return out
end

return redis.error_reply('caps.lua: unknown operation ' .. tostring(op))
