-- wrk script for the processor_ingest bench: every event of an NDJSON file POSTed once, one event per request,
-- the way Okta delivers them, then the run stops. Once every event is sent, a connection that comes free asks
-- /healthz (no Kafka write) until the last POST is answered, and prints "all posts answered" then: wrk
-- itself would run for its whole -d, so the bench sends it SIGINT on that line.
-- wrk -t1 -cN -d<cap> ... -s bench/via_ingest.lua <url> -- <events.ndjson> <secret>
-- Prints "posts answered A accepted B" at the end (B: 202 answers).
local threads = {}
local events = {}
local headers = {}
local sent = -1      -- wrk calls request() once after init to check its shape: that call gets /healthz
answered = 0   -- (global: done() reads it) POSTs answered (any status but /healthz's 200)
accepted = 0   -- (global) of them 202
local idle

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    events[#events + 1] = line
  end
  headers["Authorization"] = "Bearer " .. args[2]
  headers["Content-Type"] = "application/json"
  idle = wrk.format("GET", "/healthz")
end

function request()
  sent = sent + 1
  if sent >= 1 and sent <= #events then
    return wrk.format("POST", "/v1/events", headers, events[sent])
  end
  return idle
end

function response(status, hdrs, body)
  if status ~= 200 then
    answered = answered + 1
    if status == 202 then
      accepted = accepted + 1
    end
    if answered == #events then
      io.write("all posts answered\n")  -- the bench interrupts wrk here (its main thread sleeps -d)
      io.flush()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local a, b = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("answered")
    b = b + t:get("accepted")
  end
  io.write(string.format("posts answered %d accepted %d\n", a, b))
end
