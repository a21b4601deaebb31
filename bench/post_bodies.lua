-- wrk script: POST JSON bodies read from a file, rotating through them, with an API key.
--
-- Usage: wrk ... -s bench/post_bodies.lua http://127.0.0.1:PORT -- BODIES_FILE API_KEY PATH
-- BODIES_FILE holds one JSON body per line. done() prints one line "WRK_JSON {...}" with
-- throughput inputs, latency percentiles (microseconds) and status / error counts; the
-- bodies themselves are never printed.

local next_thread_id = 0
local threads = {}

-- Per-thread state (each wrk thread has its own Lua interpreter).
local prepared = {}
local counter = 0
status_2xx = 0
status_4xx = 0
status_5xx = 0
status_other = 0
degraded = 0

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  local bodies_file, api_key, path = args[1], args[2], args[3]
  if bodies_file == nil or api_key == nil or path == nil then
    error("usage: -- BODIES_FILE API_KEY PATH")
  end
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["X-API-Key"] = api_key
  local file = assert(io.open(bodies_file, "r"))
  for line in file:lines() do
    if #line > 0 then
      prepared[#prepared + 1] = wrk.format("POST", path, headers, line)
    end
  end
  file:close()
  if #prepared == 0 then
    error("no request bodies in " .. bodies_file)
  end
  -- Threads start at different places so they do not send the same post at the same time.
  counter = (thread_id or 0) * 131
end

function request()
  counter = counter + 1
  return prepared[(counter % #prepared) + 1]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    status_2xx = status_2xx + 1
    -- The service answers from its fallback model (HTTP 200) when a node times out.
    if body ~= nil and string.find(body, '"degraded":true', 1, true) then
      degraded = degraded + 1
    end
  elseif status >= 400 and status < 500 then
    status_4xx = status_4xx + 1
  elseif status >= 500 then
    status_5xx = status_5xx + 1
  else
    status_other = status_other + 1
  end
end

function done(summary, latency, requests)
  local totals = {status_2xx = 0, status_4xx = 0, status_5xx = 0, status_other = 0,
                  degraded = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
  end
  local errors = summary.errors
  local parts = {
    string.format('"duration_us":%d', summary.duration),
    string.format('"requests":%d', summary.requests),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors_connect":%d', errors.connect),
    string.format('"errors_read":%d', errors.read),
    string.format('"errors_write":%d', errors.write),
    string.format('"errors_status":%d', errors.status),
    string.format('"errors_timeout":%d', errors.timeout),
    string.format('"latency_min_us":%d', latency.min),
    string.format('"latency_max_us":%d', latency.max),
    string.format('"latency_mean_us":%.1f', latency.mean),
    string.format('"latency_p50_us":%d', latency:percentile(50)),
    string.format('"latency_p90_us":%d', latency:percentile(90)),
    string.format('"latency_p99_us":%d', latency:percentile(99)),
  }
  for name, value in pairs(totals) do
    parts[#parts + 1] = string.format('"%s":%d', name, value)
  end
  io.write("WRK_JSON {" .. table.concat(parts, ",") .. "}\n")
end
