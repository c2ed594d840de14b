-- wrk script with which bench/run.sh makes the sessions its session
-- scenarios rotate over: every request is a cookie-less GET /login, so
-- every response starts a session; the thread writes each session's cookie
-- ("sid=...") as a line of BENCH_COOKIES_OUT.<thread number> (flushed
-- every 1000 lines and at the end), and stops once it has BENCH_SESSIONS / threads of them. run.sh
-- watches the files, interrupts wrk once they hold BENCH_SESSIONS lines,
-- and keeps the first BENCH_SESSIONS.

local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("number", threads)
end

local out, quota, written = nil, 0, 0

function init(args)
   local total = tonumber(os.getenv("BENCH_SESSIONS"))
   local thread_count = tonumber(os.getenv("BENCH_THREADS"))
   quota = math.ceil(total / thread_count)
   out = assert(io.open(os.getenv("BENCH_COOKIES_OUT") .. "." .. number, "w"))
end

function response(status, headers, body)
   local header = headers["set-cookie"] or headers["Set-Cookie"]
   if status == 200 and header ~= nil then
      local cookie = header:match("^(sid=[^;]+)")
      if cookie ~= nil and written < quota then
         out:write(cookie, "\n")
         written = written + 1
         if written % 1000 == 0 or written >= quota then out:flush() end
      end
   end
   if written >= quota then
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   io.write(string.format("BENCH requests=%d errors=%d\n", summary.requests,
      summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.timeout + summary.errors.status))
end
