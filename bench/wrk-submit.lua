-- wrk script for the node agent's load benchmark (bench/load.sh): every
-- request submits one small job to POST /v1/jobs. The job runs on the sim
-- fleet; wrk measures how fast the agent accepts (journals, fsyncs in
-- groups, answers 202).
--
-- Environment: HETSCHED_TOKEN (bearer token, if the agent wants one),
-- HETSCHED_MODEL (default tiny-test), HETSCHED_MAX_TOKENS (default 4).

local model = os.getenv("HETSCHED_MODEL") or "tiny-test"
local max_tokens = tonumber(os.getenv("HETSCHED_MAX_TOKENS") or "4")
local token = os.getenv("HETSCHED_TOKEN")

wrk.method = "POST"
wrk.path = "/v1/jobs"
wrk.headers["Content-Type"] = "application/json"
if token and token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end
wrk.body = string.format(
   '{"model":"%s","prompt":"The quick brown fox","max_tokens":%d}',
   model, max_tokens)

function done(summary, latency, requests)
   local s = summary.duration / 1e6
   local bad = summary.errors.status + summary.errors.connect +
      summary.errors.read + summary.errors.write + summary.errors.timeout
   io.write("------------------------------------------------------------\n")
   io.write(string.format("submissions/s     %.0f\n", summary.requests / s))
   io.write(string.format("latency p50       %.3f ms\n",
                          latency:percentile(50) / 1000))
   io.write(string.format("latency p99       %.3f ms\n",
                          latency:percentile(99) / 1000))
   io.write(string.format("latency p99.9     %.3f ms\n",
                          latency:percentile(99.9) / 1000))
   io.write(string.format("latency max       %.3f ms\n", latency.max / 1000))
   io.write(string.format("requests          %d in %.1f s\n",
                          summary.requests, s))
   io.write(string.format("errors            %d (non-2xx %d)\n", bad,
                          summary.errors.status))
end
