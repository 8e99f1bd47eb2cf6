-- wrk script for bench/token.sh: every request is a POST of one form body with one
-- Authorization header, both taken from the environment:
--   BODY="grant_type=client_credentials&scope=api" AUTH="Basic Y2xpZW50OnNlY3JldA==" \
--     wrk -t1 -c32 -d10s -s bench/post.lua http://127.0.0.1:PORT/oauth2/token
-- done() prints one machine-readable line after wrk's own report:
--   RESULT <requests/s> <p50 us> <p99 us> <socket errors> <non-2xx/3xx responses>
wrk.method = "POST"
wrk.body = os.getenv("BODY") or ""
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local auth = os.getenv("AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
