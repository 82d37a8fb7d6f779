-- wrk script for scripts/bench-sessions.sh: every request is
--   POST <url path> (the URL given to wrk, i.e. /api/sessions)
--   Authorization: Bearer $KAILASH_BENCH_TOKEN
--   Content-Type: application/json
--   body: {}
-- Non-2xx/3xx responses are counted by wrk itself ("Non-2xx or 3xx
-- responses: N"); no response() callback, so Lua stays off the hot path.
local token = os.getenv("KAILASH_BENCH_TOKEN")
if token == nil or token == "" then
  error("KAILASH_BENCH_TOKEN is not set")
end

wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
