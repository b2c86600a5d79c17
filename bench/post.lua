-- wrk script: the method, headers and body come from the environment; BENCH_KEYS names a file with
-- one key per line, and each request verifies one of them at random.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth then wrk.headers["X-API-Key"] = auth end
local keys = {}
local path = os.getenv("BENCH_KEYS")
if path then for line in io.lines(path) do keys[#keys + 1] = line end end

request = function()
  if #keys > 0 then
    local body = '{"key": "' .. keys[math.random(#keys)] .. '", "scopes": ["llm:gpt-4o"], "ip": "203.0.113.7", "cost": 1}'
    return wrk.format(nil, nil, nil, body)
  end
  return wrk.format()
end
