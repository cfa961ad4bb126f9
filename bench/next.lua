-- wrk script: botify traffic on /next and /last for many users, seeded per thread.
-- Every 8th request of a connection closes that user's session with /last.
-- BENCH_MODE=trivial sends GET / instead (the baseline), with the same pacing.
local users = tonumber(os.getenv("BENCH_USERS") or "10000")
local tracks = tonumber(os.getenv("BENCH_TRACKS") or "2000")
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function setup(thread)
end

function init(args)
  math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1"))
end

local trivial = os.getenv("BENCH_MODE") == "trivial"

function request()
  if trivial then
    return wrk.format("GET", "/")
  end
  counter = counter + 1
  local user = math.random(0, users - 1)
  local body = string.format('{"track": %d, "time": %.2f}', math.random(0, tracks - 1), math.random())
  local path = (counter % 8 == 0) and "/last/" or "/next/"
  return wrk.format("POST", path .. user, headers, body)
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end
