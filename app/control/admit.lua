-- One batch's admission, in one round trip: the send gate's grants (the kill switch's fast
-- path), the throttle reservation on every scope the batch is charged to and, when its
-- tokens are due within the lead, the gate permit its requests start under.
--
-- `gate(KEYS, ARGV)` and `throttle(KEYS, ARGV)` are gate.lua and throttle.lua themselves,
-- each wrapped as a function by app/control/admit.py: the grants, the permit and the
-- reservation are those scripts' own code, run in this one atomic script.
--
-- KEYS: global grant, campaign grant, permits, then the throttle's triples (rate, tat,
--       blocked) of each scope, the campaign's first
-- ARGV: campaign, permit, permit ttl_ms, lead seconds, then the throttle's `reserve`
--       arguments (want, batched, max_batch, window_fraction)
-- ->    {'closed', refusal}: a grant is closed (-1 global, -2 campaign); nothing written
--       | the throttle's refusals ({'unknown', i...}, {'paused', i...},
--         {'blocked', wait, now, block_end}); nothing written
--       | {'ok', n, wait, now, start, permit, rate}: n reserved; permit 1 when it was
--         taken (wait <= lead), else 0; rate: the campaign's as the reservation read it

local grants = {KEYS[1], KEYS[2], KEYS[3]}
local open = gate(grants, {'check'})
if open ~= 1 then
  return {'closed', tostring(open)}
end

local scopes = {}
for i = 4, #KEYS do
  scopes[#scopes + 1] = KEYS[i]
end
local reserve = {'reserve'}
for i = 5, #ARGV do
  reserve[#reserve + 1] = ARGV[i]
end
local reply = throttle(scopes, reserve)
if reply[1] ~= 'ok' then
  return reply
end

-- A permit is held from now until the batch's requests are done: taken only when they are
-- due within the lead, so a stop never waits on a batch that is still waiting for its turn.
local permit = '0'
if tonumber(reply[3]) <= tonumber(ARGV[4]) then
  if gate(grants, {'acquire', ARGV[1], ARGV[2], ARGV[3]}) == 1 then
    permit = '1'
  end
end
reply[#reply + 1] = permit
reply[#reply + 1] = redis.call('GET', scopes[1]) or ''
return reply
