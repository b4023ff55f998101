-- keygate-redis: check every window of one request and, only if all admit, count it in
-- each (GCRA). All or nothing: a script runs atomically.
--
-- KEYS[i]: the counter of window i, "tq tr scale": the theoretical arrival time
--   tq + tr / scale microseconds since the Unix epoch (0 <= tr < scale).
-- ARGV[1]: now in microseconds since the Unix epoch, or "" to read Redis TIME.
-- ARGV[2 + 4(i - 1) ..]: window i's limit, period (µs), scale and step: one request
--   is `step / scale` µs, so `period * scale` is the whole window, scaled.
--
-- Every value stays an integer below 2^53 (the crate checks period * scale <= 2^52),
-- so Lua's doubles compute it exactly.
--
-- Returns {now, allowed (1 or 0), d1, tr1, d2, tr2, ...}: each window's use before
-- this request, (d * scale + tr) scaled µs; the crate reports from it.

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end

-- floor(a / b) exactly, for 0 <= a < 2^53 and 0 < b < 2^53.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local out = {now, 1}
local used = {}
local allowed = true
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local limit = tonumber(ARGV[base])
  local period = tonumber(ARGV[base + 1])
  local scale = tonumber(ARGV[base + 2])
  local step = tonumber(ARGV[base + 3])
  local tq, tr = now, 0
  local stored = redis.call('GET', KEYS[i])
  if stored then
    local q, r, s = string.match(stored, '^(-?%d+) (%d+) (%d+)$')
    if q then
      tq, tr = tonumber(q), tonumber(r)
      if tonumber(s) ~= scale then
        -- The limit changed: keep the counter's instant, rounded up to a microsecond.
        if tr > 0 then
          tq = tq + 1
        end
        tr = 0
      end
    end
  end
  local d = tq - now
  if d < 0 then
    d, tr = 0, 0
  end
  if limit == 0 or d > period then
    allowed = false
  else
    used[i] = d * scale + tr
    if used[i] + step > period * scale then
      allowed = false
    end
  end
  out[#out + 1] = d
  out[#out + 1] = tr
end

if allowed then
  for i = 1, #KEYS do
    local base = 2 + (i - 1) * 4
    local scale = tonumber(ARGV[base + 2])
    local after = used[i] + tonumber(ARGV[base + 3])
    local q = idiv(after, scale)
    local r = after - q * scale
    -- Kept until the window is whole again: forgetting it then changes no decision.
    local until_whole = q
    if r > 0 then
      until_whole = q + 1
    end
    local ttl = math.max(1, math.floor((until_whole + 999) / 1000))
    redis.call('SET', KEYS[i], string.format('%.0f %.0f %.0f', now + q, r, scale), 'PX', ttl)
  end
else
  out[2] = 0
end
return out
