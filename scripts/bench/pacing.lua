-- Shared by the wrk scripts (loaded with dofile from $KAILASH_BENCH_LUA_DIR): with
-- $KAILASH_BENCH_RATE (requests/s over all $KAILASH_BENCH_CONNECTIONS connections), each
-- connection waits its share before every request: an arrival rate the server can keep
-- up with, for latencies without a backlog (or a flood of a chosen size).
local rate = tonumber(os.getenv("KAILASH_BENCH_RATE") or "0") or 0
local connections = tonumber(os.getenv("KAILASH_BENCH_CONNECTIONS") or "1") or 1
if rate > 0 then
  function delay()
    return 1000 * connections / rate
  end
end
