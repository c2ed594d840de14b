-- wrk script used for every run of bench/run.sh.
--
-- BENCH_COOKIE (optional): a Cookie header value sent with every request,
-- e.g. "sid=s%3A...". Set at load time, so wrk keeps its fast path of one
-- pre-built request instead of calling into Lua per request.
--
-- BENCH_COOKIES (optional, instead): a file of Cookie header values, one
-- per line. Requests rotate over them, as the browsers of many users do;
-- each thread starts at its own place. The requests are built once, at
-- load time; per request Lua only hands the next one over.
--
-- done() prints one machine-readable line that run.sh parses:
--   BENCH requests=N duration_us=N p99_us=N socket_errors=N status_errors=N
-- status_errors counts responses with a status of 400 or more.

local cookie = os.getenv("BENCH_COOKIE")
if cookie ~= nil and cookie ~= "" then
   wrk.headers["Cookie"] = cookie
end

local cookies = os.getenv("BENCH_COOKIES")
if cookies ~= nil and cookies ~= "" then
   local threads = 0

   function setup(thread)
      threads = threads + 1
      thread:set("number", threads)
   end

   local built, next_one = {}, 1

   function init(args)
      for line in io.lines(cookies) do
         local headers = {}
         for name, value in pairs(wrk.headers) do headers[name] = value end
         headers["Cookie"] = line
         built[#built + 1] = wrk.format(nil, nil, headers)
      end
      assert(#built > 0, "no cookies in " .. cookies)
      -- Threads start apart, so they do not walk the sessions in step.
      next_one = 1 + math.floor((number - 1) * #built / 7) % #built
   end

   function request()
      local request = built[next_one]
      next_one = next_one % #built + 1
      return request
   end
end

function done(summary, latency, requests)
   local errors = summary.errors
   local socket_errors = errors.connect + errors.read + errors.write + errors.timeout
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p99_us=%.0f socket_errors=%d status_errors=%d\n",
      summary.requests, summary.duration, latency:percentile(99),
      socket_errors, errors.status))
end
