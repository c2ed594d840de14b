-- wrk script used for every run of bench/run.sh.
--
-- BENCH_COOKIE (optional): a Cookie header value sent with every request,
-- e.g. "sid=s%3A...". Set at load time, so wrk keeps its fast path of one
-- pre-built request instead of calling into Lua per request.
--
-- done() prints one machine-readable line that run.sh parses:
--   BENCH requests=N duration_us=N p99_us=N socket_errors=N status_errors=N
-- status_errors counts responses with a status of 400 or more.

local cookie = os.getenv("BENCH_COOKIE")
if cookie ~= nil and cookie ~= "" then
   wrk.headers["Cookie"] = cookie
end

function done(summary, latency, requests)
   local errors = summary.errors
   local socket_errors = errors.connect + errors.read + errors.write + errors.timeout
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p99_us=%.0f socket_errors=%d status_errors=%d\n",
      summary.requests, summary.duration, latency:percentile(99),
      socket_errors, errors.status))
end
