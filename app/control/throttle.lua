-- Wavecast cross-process throttle. One script, three operations, each one atomic EVALSHA.
--
-- The arithmetic is app/control/throttle_math.py, operation for operation: the tests compare
-- the two bit for bit, so change both or neither. Instants are Redis server time (TIME), never
-- a worker's clock, so workers with skewed clocks share one timeline. Numbers are stored with
-- %.17g, which round-trips an IEEE double exactly (Lua's default tostring keeps 14 digits, too
-- few for epoch seconds with microseconds).
--
-- Keys, per scope (KEYS come in triples, in this order):
--   {prefix}:{scope}:rate     string  'unlimited' | sends per second ('0' = paused); no expiry
--   {prefix}:{scope}:tat      hash    tat = earliest next start, rate = rate tat was built at;
--                                     expires 1 s after tat, when it could no longer delay anyone
--   {prefix}:{scope}:blocked  string  no reservation starts before this instant (Retry-After);
--                                     expires 1 s after it
--
-- ARGV[1] selects the operation:
--   reserve     ARGV: want, batched ('1' | '0'), max_batch, window_fraction
--               -> {'ok', n, wait, now, start} | {'unknown', i...} | {'paused', i...}
--                  | {'blocked', wait, now, block_end} (batched only)
--               (i = 0-based scope positions; on refusal nothing is written)
--   block       KEYS: one blocked key; ARGV: seconds, channel, scope -> {blocked_until}
--               a block it writes (new or lengthened) is also published on `channel` as
--               {"scope": scope, "seconds": seconds left on the server clock}
--   blocked_for KEYS: one blocked key                         -> {seconds left, >= 0}

local function fmt(x)
  return string.format('%.17g', x)
end

local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Expiry in ms for a key that stops mattering at `instant`; the extra second means a key can
-- only vanish once it is in the past, where absent and present give the same answer.
local function ttl_ms(instant, now)
  return string.format('%.0f', math.ceil((instant - now) * 1000) + 1000)
end

local op = ARGV[1]

if op == 'reserve' then
  local want = tonumber(ARGV[2])
  local batched = ARGV[3] == '1'
  local max_batch = tonumber(ARGV[4])
  local window_fraction = tonumber(ARGV[5])
  local now = server_now()
  local scopes = #KEYS / 3

  -- false = unlimited; Lua tables cannot hold nil in the middle of an array.
  local rates = {}
  local unknown, paused = {}, {}
  local tightest = nil
  for i = 1, scopes do
    local raw = redis.call('GET', KEYS[3 * i - 2])
    if not raw then
      unknown[#unknown + 1] = tostring(i - 1)
    elseif raw == 'unlimited' then
      rates[i] = false
    else
      local rate = tonumber(raw)
      rates[i] = rate
      if rate == 0 then
        paused[#paused + 1] = tostring(i - 1)
      end
      if tightest == nil or rate < tightest then
        tightest = rate
      end
    end
  end
  -- Fail closed before anything is written: an unknown rate must be refreshed from the
  -- database, and a paused scope must not leave reservations behind on the other scopes.
  if #unknown > 0 then
    return {'unknown', unpack(unknown)}
  end
  if #paused > 0 then
    return {'paused', unpack(paused)}
  end

  -- A batched reservation is never granted across a block: it would start at the block's end
  -- as it stands now, and a longer Retry-After written meanwhile (another worker's 429) could
  -- no longer hold it back. It takes nothing and says how long to wait before asking again.
  -- See throttle_math.block_in_force.
  if batched then
    local block_end = nil
    for i = 1, scopes do
      local blocked = redis.call('GET', KEYS[3 * i])
      if blocked then
        local b = tonumber(blocked)
        if b > now and (block_end == nil or b > block_end) then
          block_end = b
        end
      end
    end
    if block_end ~= nil then
      return {'blocked', fmt(block_end - now), fmt(now), fmt(block_end)}
    end
  end

  local n = want
  if batched then
    local batch = max_batch
    if tightest ~= nil then
      batch = math.max(1, math.min(max_batch, math.floor(tightest * window_fraction)))
    end
    n = math.min(want, batch)
  end

  local start = now
  for i = 1, scopes do
    local blocked = redis.call('GET', KEYS[3 * i])
    if blocked then
      start = math.max(start, tonumber(blocked))
    end
    local rate = rates[i]
    if rate then
      local state = redis.call('HMGET', KEYS[3 * i - 1], 'tat', 'rate')
      if state[1] then
        local tat = tonumber(state[1])
        if rate > tonumber(state[2]) then
          -- Raised since tat was built: see throttle_math.effective_tat.
          tat = math.min(tat, now + math.max(1.0, n / rate))
        end
        start = math.max(start, tat)
      end
    end
  end

  for i = 1, scopes do
    local rate = rates[i]
    if rate then
      local tat = start + n / rate
      redis.call('HSET', KEYS[3 * i - 1], 'tat', fmt(tat), 'rate', fmt(rate))
      redis.call('PEXPIRE', KEYS[3 * i - 1], ttl_ms(tat, now))
    end
  end
  return {'ok', tostring(n), fmt(start - now), fmt(now), fmt(start)}
end

if op == 'block' then
  local now = server_now()
  local blocked_until = now + tonumber(ARGV[2])
  local current = redis.call('GET', KEYS[1])
  if current and tonumber(current) >= blocked_until then
    return {current}
  end
  redis.call('SET', KEYS[1], fmt(blocked_until), 'PX', ttl_ms(blocked_until, now))
  -- In the same script as the write: every worker's block feed hears of a block exactly when
  -- it is in force, and of no block that was not written. What is left, not the instant: a
  -- worker's clock is not the server's.
  redis.call('PUBLISH', ARGV[3], cjson.encode({scope = ARGV[4], seconds = blocked_until - now}))
  return {fmt(blocked_until)}
end

if op == 'blocked_for' then
  local now = server_now()
  local current = redis.call('GET', KEYS[1])
  if not current then
    return {'0'}
  end
  return {fmt(math.max(0, tonumber(current) - now))}
end

return redis.error_reply('throttle.lua: unknown operation ' .. tostring(op))
