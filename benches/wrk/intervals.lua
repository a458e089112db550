-- wrk script: completed responses per 250 ms interval (all threads merged),
-- responses by status, and the latency distribution.
--   wrk -t2 -c64 -d10s --latency -s benches/wrk/intervals.lua http://127.0.0.1:3000/
-- Bounded: one counter per 250 ms interval and per status code.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } sa_timeval;
  int gettimeofday(sa_timeval *tv, void *tz);
]]
local tv = ffi.new("sa_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  buckets = {}
  statuses = {}
end

function response(status, headers, body)
  local b = math.floor(now_ms() / 250)
  buckets[b] = (buckets[b] or 0) + 1
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local all, codes = {}, {}
  local lo, hi = nil, nil
  for _, t in ipairs(threads) do
    for b, n in pairs(t:get("buckets")) do
      all[b] = (all[b] or 0) + n
      if lo == nil or b < lo then lo = b end
      if hi == nil or b > hi then hi = b end
    end
    for s, n in pairs(t:get("statuses")) do
      codes[s] = (codes[s] or 0) + n
    end
  end
  local line, empty, min = {}, 0, nil
  if lo ~= nil then
    -- first and last intervals are partial (wrk starting / stopping)
    for b = lo, hi do
      local n = all[b] or 0
      table.insert(line, tostring(n))
      if b > lo and b < hi then
        if n == 0 then empty = empty + 1 end
        if min == nil or n < min then min = n end
      end
    end
  end
  io.write("per-250ms completions: " .. table.concat(line, " ") .. "\n")
  io.write(string.format("empty 250ms intervals (inner): %d, fewest completions in an inner interval: %s\n",
    empty, tostring(min)))
  local parts = {}
  for s, n in pairs(codes) do table.insert(parts, s .. "=" .. n) end
  table.sort(parts)
  io.write("statuses: " .. table.concat(parts, " ") .. "\n")
  io.write(string.format("latency ms: p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
