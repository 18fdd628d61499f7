-- The send gate. Every key holds a positive grant; a missing key means "closed", so a
-- Redis that lost its data stops every send until the reconciler re-derives the grants
-- from the database.
--
-- set:      KEYS[1] = the grant to write ("open:<version>" | "closed:<version>")
-- check:    KEYS[1] = global grant, KEYS[2] = campaign grant
-- acquire:  KEYS[1] = global grant, KEYS[2] = campaign grant, KEYS[3] = permits
-- release, inflight: KEYS[1] = permits (sorted set: "<campaign>|<permit>" → expiry ms)
-- renew:    KEYS[1] = global grant, KEYS[2] = permits, KEYS[3..] = the permits' campaign grants
local op = ARGV[1]

local function version_of(value)
  if not value then return -1 end
  local sep = string.find(value, ":", 1, true)
  return tonumber(string.sub(value, sep + 1))
end

local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- KEYS[1] = global grant, KEYS[2] = campaign grant: 1 when both are open, -1 when the
-- global one is not, -2 when the campaign's is not.
local function grants_open()
  local global = redis.call("GET", KEYS[1])
  if not global or string.sub(global, 1, 5) ~= "open:" then return -1 end
  local campaign = redis.call("GET", KEYS[2])
  if not campaign or string.sub(campaign, 1, 5) ~= "open:" then return -2 end
  return 1
end

if op == "set" then
  -- ARGV: op, state ("open"|"closed"), version, ttl_seconds (0: none)
  -- A grant is only ever replaced by one at least as new: a reconciler that read the
  -- database before a kill can never re-open the campaign the kill closed.
  local current = redis.call("GET", KEYS[1])
  local version = tonumber(ARGV[3])
  if version_of(current) > version then return 0 end
  local value = ARGV[2] .. ":" .. ARGV[3]
  local ttl = tonumber(ARGV[4])
  if ttl > 0 then
    redis.call("SET", KEYS[1], value, "EX", ttl)
  else
    redis.call("SET", KEYS[1], value)
  end
  return 1
elseif op == "check" then
  -- Returns 1 when both grants are open, else the refusal; writes nothing.
  return grants_open()
elseif op == "acquire" then
  -- ARGV: op, campaign, permit, ttl_ms
  -- Returns 1 and records a permit only when both grants are open.
  local open = grants_open()
  if open ~= 1 then return open end
  redis.call("ZADD", KEYS[3], now_ms() + tonumber(ARGV[4]), ARGV[2] .. "|" .. ARGV[3])
  return 1
elseif op == "renew" then
  -- ARGV: op, ttl_ms, then one "<campaign>|<permit>" per campaign grant in KEYS[3..].
  -- Per permit: 1 while both grants are open, 0 once either is closed, -1 when the permit
  -- is gone (it expired: a stop may already have stopped waiting for it). A held permit is
  -- extended even behind a closed grant: its holder still has requests on the wire, and a
  -- stop waits for those.
  local global = redis.call("GET", KEYS[1])
  local global_open = global and string.sub(global, 1, 5) == "open:"
  local now = now_ms()
  local expiry = now + tonumber(ARGV[2])
  local out = {}
  for i = 3, #ARGV do
    local member = ARGV[i]
    local score = redis.call("ZSCORE", KEYS[2], member)
    if not score or tonumber(score) <= now then
      redis.call("ZREM", KEYS[2], member)
      out[#out + 1] = -1
    else
      redis.call("ZADD", KEYS[2], "XX", expiry, member)
      local campaign = redis.call("GET", KEYS[i])
      if global_open and campaign and string.sub(campaign, 1, 5) == "open:" then
        out[#out + 1] = 1
      else
        out[#out + 1] = 0
      end
    end
  end
  return out
elseif op == "release" then
  -- ARGV: op, campaign, permit
  return redis.call("ZREM", KEYS[1], ARGV[2] .. "|" .. ARGV[3])
elseif op == "inflight" then
  -- ARGV: op, campaign prefix ("" for all). Counts unexpired permits, dropping expired ones.
  local now = now_ms()
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
  local members = redis.call("ZRANGE", KEYS[1], 0, -1)
  local prefix = ARGV[2]
  local count = 0
  for _, member in ipairs(members) do
    if prefix == "" or string.sub(member, 1, string.len(prefix) + 1) == prefix .. "|" then
      count = count + 1
    end
  end
  return count
end
return redis.error_reply("unknown gate op " .. tostring(op))
