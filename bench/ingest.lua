-- wrk script for the ingest bench: one ELS event per POST, the way Okta sends them, each with its own
-- execution_id and idempotency_key (the template's @ID@ placeholders), with the Authorization header.
-- wrk ... -s bench/ingest.lua <url> -- <template file> <secret>
local threads = {}
local counter = 0
local prefix = "t0"
local template
local headers = {}

function setup(thread)
  thread:set("prefix", "t" .. #threads .. "-" .. os.time())
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  template = f:read("*a")
  f:close()
  headers["Authorization"] = "Bearer " .. args[2]
  headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  local body = template:gsub("@ID@", id)
  return wrk.format("POST", "/v1/events", headers, body)
end
