-- wrk script: GET /v1/decide as nginx's auth_request sends it, clients
-- spread over 256 addresses of 203.0.113.0/24 (none blocked).
local n = 0
request = function()
  n = n + 1
  local headers = {
    ["X-Forwarded-For"] = "203.0.113." .. (n % 256),
    ["X-Original-URI"] = "/account/profile?tab=1",
    ["X-Original-Method"] = "GET",
  }
  return wrk.format("GET", "/v1/decide", headers)
end
