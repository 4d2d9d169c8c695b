-- wrk script for bench/run.sh: optional request headers from the
-- environment, and a one-line machine-readable summary at the end.
--
--   BENCH_RANGE          value of the Range header (unset: none)
--   BENCH_IF_NONE_MATCH  value of the If-None-Match header (unset: none)
--
-- No per-response callback is defined, so wrk keeps its fast path; wrk
-- itself counts responses outside 2xx/3xx (summary.errors.status).

local range = os.getenv("BENCH_RANGE")
local inm = os.getenv("BENCH_IF_NONE_MATCH")
if range ~= nil and range ~= "" then
  wrk.headers["Range"] = range
end
if inm ~= nil and inm ~= "" then
  wrk.headers["If-None-Match"] = inm
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCHRESULT requests=%d duration_us=%d rps=%.1f bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d "
      .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.requests / secs, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
