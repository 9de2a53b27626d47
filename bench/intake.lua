-- wrk script for bench/intake.py: cycles through pre-signed webhook deliveries, each sent with
-- its own X-GitHub-Delivery, counts the answers by status, and prints the figures as JSON.
-- Arguments (after `--`): the data file (written by intake.py), a delivery id prefix,
-- the number of wrk threads (each takes every n-th delivery, so no two send the same one).
--
-- The data file has one tab-separated record a line (compact JSON holds no raw tab):
--   event<TAB>push
--   path<TAB>/api/github/webhooks
--   template<TAB>part<US>part...            (a body is its parts joined by a delivery's fill)
--   delivery<TAB>template number<TAB>fill<TAB>X-Hub-Signature-256

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
  table.insert(threads, thread)
end

local function split(text, separator)
  local fields, start = {}, 1
  while true do
    local at = string.find(text, separator, start, true)
    if not at then
      table.insert(fields, string.sub(text, start))
      return fields
    end
    table.insert(fields, string.sub(text, start, at - 1))
    start = at + #separator
  end
end

local function load(path)
  local loaded = {templates = {}, deliveries = {}}
  for line in io.lines(path) do
    local f = split(line, "\t")
    if f[1] == "event" then
      loaded.event = f[2]
    elseif f[1] == "path" then
      loaded.path = f[2]
    elseif f[1] == "template" then
      table.insert(loaded.templates, split(f[2], "\31"))
    elseif f[1] == "delivery" then
      table.insert(loaded.deliveries, {tonumber(f[2]), f[3], f[4]})
    end
  end
  return loaded
end

function init(args)
  data = load(args[1])
  prefix = args[2]
  thread_total = tonumber(args[3])
  sent = 0
  statuses = {}
  headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "GitHub-Hookshot/bench",
    ["X-GitHub-Event"] = data.event,
  }
end

function request()
  local n = #data.deliveries
  local index = (sent * thread_total + thread_id - 1) % n + 1
  local delivery = data.deliveries[index]
  sent = sent + 1
  headers["X-GitHub-Delivery"] = string.format("%s-%d-%d", prefix, thread_id, sent)
  headers["X-Hub-Signature-256"] = delivery[3]
  local body = table.concat(data.templates[delivery[1]], delivery[2])
  return wrk.format("POST", data.path, headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local function json_object(map)
  local items = {}
  for key, value in pairs(map) do
    table.insert(items, string.format('"%s": %d', tostring(key), value))
  end
  return "{" .. table.concat(items, ", ") .. "}"
end

function done(summary, latency, requests)
  local codes = {}
  local total_sent = 0
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do
      codes[code] = (codes[code] or 0) + count
    end
    total_sent = total_sent + thread:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "sent": %d, "p50_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, '
      .. '"timeout": %d}, "statuses": %s}\n',
    summary.requests, summary.duration, total_sent, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    json_object(codes)))
end
