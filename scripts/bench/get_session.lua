-- wrk script for scripts/bench-auth.sh: every request is
--   GET <url path> (the URL given to wrk, i.e. /api/sessions/<id>)
--   Authorization: Bearer $KAILASH_BENCH_TOKEN
-- Non-2xx responses are counted by wrk itself; no response() callback. Paced by
-- $KAILASH_BENCH_RATE when set (pacing.lua).
local token = os.getenv("KAILASH_BENCH_TOKEN")
if token == nil or token == "" then
  error("KAILASH_BENCH_TOKEN is not set")
end

wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. token

dofile(os.getenv("KAILASH_BENCH_LUA_DIR") .. "/pacing.lua")
