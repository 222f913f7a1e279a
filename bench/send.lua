-- wrk script: realistic /api/send pageviews. Paths, titles and referrers rotate, some URLs carry UTM parameters, and the
-- User-Agent comes from a pool of 1,000 browser strings with a skewed (Zipf-like) popularity; with UNIQUE_UA=1 every
-- request has a never-seen user agent instead (a bot storm). BATCH=N posts arrays of N events to /api/batch. DELAY_MS=N
-- makes each connection wait N ms between requests (a paced load, for bench/soak.py).
local website = os.getenv("WEBSITE")
local unique = os.getenv("UNIQUE_UA") == "1"
local batch = tonumber(os.getenv("BATCH") or "0")
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local counter = 0
acknowledged = 0  -- global: done() reads it from each thread
local threads = {}

local browsers = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%d.0.%d.%d Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%d Safari/605.1.%d%d",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_%d like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%d Mobile/15E%d Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; SM-S9%dB) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%d.0.0.%d Mobile Safari/537.36",
  "Mozilla/5.0 (X11; Linux x86_64; rv:%d.0) Gecko/20100101 Firefox/%d.%d",
}
local agents = {}
for i = 1, 1000 do
  agents[i] = string.format(browsers[(i % #browsers) + 1], 100 + i % 40, i, i % 97)
end
local paths = {}
for i = 1, 200 do paths[i] = "/blog/post-" .. i .. "-a-readable-slug" end
local referrers = {"", "", "https://www.google.com/", "https://news.ycombinator.com/item?id=4242", "https://duckduckgo.com/"}

local function zipf()  -- index 1..1000, popular agents far more often
  return math.max(1, math.min(1000, math.floor(1 / (math.random() ^ 1.2 + 0.001))))
end

local function event()
  counter = counter + 1
  local path = paths[(counter * 7919) % #paths + 1]
  local query = (counter % 5 == 0) and "?utm_source=newsletter&utm_medium=email&utm_campaign=launch" or ""
  return string.format('{"type":"event","payload":{"website":"%s","hostname":"example.com","screen":"1920x1080",' ..
    '"language":"en-US","title":"Post %d | Example Blog","url":"https://example.com%s%s","referrer":"%s"}}',
    website, counter % 200, path, query, referrers[counter % #referrers + 1])
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  local agent
  if unique then
    counter = counter + 1
    agent = string.format(browsers[(counter % #browsers) + 1], 100 + counter % 40, counter, math.random(1, 9999999))
  else
    agent = agents[zipf()]
  end
  local body
  if batch > 0 then
    local items = {}
    for i = 1, batch do items[i] = event() end
    body = "[" .. table.concat(items, ",") .. "]"
    return wrk.format("POST", "/api/batch", {["Content-Type"] = "application/json", ["User-Agent"] = agent}, body)
  end
  return wrk.format("POST", "/api/send", {["Content-Type"] = "application/json", ["User-Agent"] = agent}, event())
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function response(status, headers, body)
  if status == 200 then acknowledged = acknowledged + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("acknowledged") end
  io.write(string.format("ACKNOWLEDGED %d\n", total))
end
