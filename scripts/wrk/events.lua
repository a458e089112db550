-- wrk script: POST /v1/events, 100 JSONL lines per request (successful
-- page views from 256 addresses: egress evaluates them, nothing blocks).
local lines = {}
for i = 1, 100 do
  lines[#lines + 1] = string.format(
    '{"event_type":"http.response.success","source.address":"198.51.100.%d","url.path":"/page/%d","http.request.method":"GET","http.response.status_code":200}',
    i % 256, i)
end
wrk.method = "POST"
wrk.body = table.concat(lines, "\n") .. "\n"
wrk.headers["Content-Type"] = "application/x-ndjson"
