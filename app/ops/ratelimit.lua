-- Wavecast API rate limit: GCRA, one atomic EVALSHA per call.
-- The arithmetic is app/ops/ratelimit_math.py `take`, step for step.
--
-- KEYS[1]  the bucket's TAT (theoretical arrival time, epoch seconds, %.17g)
-- ARGV[1]  interval: seconds between requests at the sustained rate (1 / rate)
-- ARGV[2]  burst: how many requests may arrive at once
-- ARGV[3]  wanted: how many requests' worth to take now (an API process's lease; default 1)
-- -> {granted, '0'} 1 <= granted <= wanted | {0, retry_after_seconds} refused (nothing written)
-- Instants are Redis server time, so every API process shares one clock.

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3] or '1')
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
-- SLACK as in ratelimit_math: float rounding must not refuse the burst-th request.
local fit = math.floor((now + interval * burst - tat + 0.000001) / interval)
local granted = math.min(wanted, fit)
if granted < 1 then
  return {0, string.format('%.17g', tat + interval - interval * burst - now)}
end
local new_tat = tat + granted * interval
-- The key only matters until new_tat: after it, absent and present give the same answer.
local ttl = math.ceil((new_tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', string.format('%.0f', ttl))
return {granted, '0'}
