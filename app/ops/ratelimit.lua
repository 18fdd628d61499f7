-- Wavecast API rate limit: GCRA, one atomic EVALSHA per request.
-- The arithmetic is app/ops/ratelimit_math.py `gcra`, step for step.
--
-- KEYS[1]  the bucket's TAT (theoretical arrival time, epoch seconds, %.17g)
-- ARGV[1]  interval: seconds between requests at the sustained rate (1 / rate)
-- ARGV[2]  burst: how many requests may arrive at once
-- -> {1, '0'} allowed | {0, retry_after_seconds} refused (nothing written)
-- Instants are Redis server time, so every API process shares one clock.

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
-- SLACK as in ratelimit_math: float rounding must not refuse the burst-th request.
if allow_at - now > 0.000001 then
  return {0, string.format('%.17g', allow_at - now)}
end
-- The key only matters until new_tat: after it, absent and present give the same answer.
local ttl = math.ceil((new_tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', string.format('%.0f', ttl))
return {1, '0'}
