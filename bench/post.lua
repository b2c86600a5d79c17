-- wrk script: the method, headers and body come from the environment. BENCH_KEYS names a file with
-- one key per line; each request verifies one of them:
--   * by default at random (the hot load: a small file, every key soon in every worker's cache);
--   * with BENCH_ZIPF=s, by a Zipf law of exponent s over the file's keys (the mixed load: the key of
--     rank r is asked in proportion to 1 / r^s, so a few keys are hot and a long tail is cold);
--   * with BENCH_WALK=1, in file order without repeating (the cold load). Thread `id` of
--     BENCH_THREADS takes the lines id, id + threads, id + 2 * threads, ... (a stride of its own,
--     shared by its connections), starting at stride index BENCH_KEYS_START, so that consecutive
--     runs continue where the previous one stopped. It wraps around (repeats) only when its stride
--     runs out; bench/run.py reports that.
-- done() prints one "bench-keys" line per thread (keys handed out, stride length) for bench/run.py.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth then wrk.headers["X-API-Key"] = auth end
local path = os.getenv("BENCH_KEYS")
local walk = os.getenv("BENCH_WALK") == "1"
local zipf = tonumber(os.getenv("BENCH_ZIPF") or "")
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
local start = tonumber(os.getenv("BENCH_KEYS_START") or "0")

-- Main state: number the threads. Each thread's state reads `id` in init().
local created = {}
function setup(thread)
  thread:set("id", #created)
  created[#created + 1] = thread
end

-- Thread states: globals, so that done() can read them with thread:get().
keys = {}
sent = 0
stride = 0
cumulative = {}  -- Zipf: cumulative[r] = P(rank <= r)

function init(args)
  if not path then return end
  local line_number = 0
  for line in io.lines(path) do
    if not walk or line_number % threads == id then keys[#keys + 1] = line end
    line_number = line_number + 1
  end
  stride = #keys
  if zipf then
    local total = 0
    for rank = 1, #keys do
      total = total + 1 / rank ^ zipf
      cumulative[rank] = total
    end
    for rank = 1, #keys do cumulative[rank] = cumulative[rank] / total end
  end
end

local function zipf_rank()
  local u, low, high = math.random(), 1, #cumulative
  while low < high do  -- the first rank whose cumulative probability reaches u
    local middle = math.floor((low + high) / 2)
    if cumulative[middle] < u then low = middle + 1 else high = middle end
  end
  return low
end

request = function()
  if #keys == 0 then return wrk.format() end
  local key
  if walk then
    key = keys[(start + sent) % #keys + 1]
  elseif zipf then
    key = keys[zipf_rank()]
  else
    key = keys[math.random(#keys)]
  end
  sent = sent + 1
  local body = '{"key": "' .. key .. '", "scopes": ["llm:gpt-4o"], "ip": "203.0.113.7", "cost": 1}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  for _, thread in ipairs(created) do
    io.write(string.format("bench-keys thread=%d sent=%d stride=%d start=%d walk=%s\n",
      thread:get("id"), thread:get("sent"), thread:get("stride"), start, tostring(walk)))
  end
end
