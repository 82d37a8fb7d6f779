-- wrk script for scripts/bench-executions.sh: every request is
--   POST /api/executions?session_id=<sid>
--   Authorization: Bearer $KAILASH_BENCH_TOKEN
--   Content-Type: application/json
--   body: {"workflow_id": "<wid>", "inputs": <$KAILASH_BENCH_INPUTS>}
-- where <sid>:<wid> cycles over $KAILASH_BENCH_TARGETS ("sid1:wid1,sid2:wid2,...":
-- one session per connection, each holding the benchmark workflow). Each wrk
-- thread walks the list round-robin from its own offset, so the requests
-- spread evenly over the sessions. The requests are formatted once in init();
-- request() only picks the next one. Non-2xx/3xx responses are counted by wrk
-- itself ("Non-2xx or 3xx responses: N"); no response() callback.
local token = os.getenv("KAILASH_BENCH_TOKEN")
if token == nil or token == "" then
  error("KAILASH_BENCH_TOKEN is not set")
end
local spec = os.getenv("KAILASH_BENCH_TARGETS")
if spec == nil or spec == "" then
  error("KAILASH_BENCH_TARGETS is not set")
end

local inputs = os.getenv("KAILASH_BENCH_INPUTS")
if inputs == nil or inputs == "" then
  error("KAILASH_BENCH_INPUTS is not set")
end

local targets = {}
for sid, wid in string.gmatch(spec, "([^:,]+):([^:,]+)") do
  targets[#targets + 1] = { sid = sid, wid = wid }
end
if #targets == 0 then
  error("KAILASH_BENCH_TARGETS holds no sid:wid pairs")
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

-- main state: number the threads so each starts at a different target
local thread_count = 0
function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local requests = {}
local counter = 0

function init(args)
  for i, t in ipairs(targets) do
    local body = '{"workflow_id": "' .. t.wid .. '", "inputs": ' .. inputs .. '}'
    requests[i] = wrk.format("POST", "/api/executions?session_id=" .. t.sid, nil, body)
  end
  -- thread_index is set by setup() in this thread's Lua state; the bench
  -- runs wrk -t2, so the second thread starts half-way through the list
  counter = math.floor((thread_index or 0) * #requests / 2) % #requests
end

dofile(os.getenv("KAILASH_BENCH_LUA_DIR") .. "/pacing.lua")

function request()
  counter = counter + 1
  return requests[(counter % #requests) + 1]
end
