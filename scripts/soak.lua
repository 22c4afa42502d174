-- SPDX-License-Identifier: MIT
-- wrk script for scripts/soak.sh: a mix of nori-demo's routes over many
-- distinct cache keys (far more than CACHE_MAX_KEYS, so the memory backend
-- evicts all the time), with every response's status checked against its
-- body: 200 everywhere, 500 only from /fail, 429 only from the login
-- throttle. Counts are printed by done() as "soak-lua: name=value" lines.
local threads = {}
local langs = {"fr", "de-DE,de;q=0.9", "es", "en-US", "fr,en;q=0.5", "it", ""}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  ok, fails, throttled, unexpected = 0, 0, 0, 0
  last_unexpected = ""
  math.randomseed(id * 7919 + os.time())
end

function request()
  local r = math.random(100)
  if r <= 20 then
    return wrk.format("GET", "/dashboard")
  elseif r <= 45 then
    return wrk.format("GET", "/products?page=" .. math.random(3000))
  elseif r <= 55 then
    return wrk.format("GET", "/greeting", {["Accept-Language"] = langs[math.random(#langs)]})
  elseif r <= 75 then
    return wrk.format("GET", "/me", {["X-User"] = "user" .. math.random(2000)})
  elseif r <= 82 then
    return wrk.format("GET", "/report.pdf")
  elseif r <= 90 then
    return wrk.format("GET", "/hello")
  elseif r <= 95 then
    return wrk.format("GET", "/fail")
  else
    return wrk.format("POST", "/login",
                      {["Content-Type"] = "application/x-www-form-urlencoded"},
                      "user=soak" .. math.random(5000))
  end
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 500 and body:find("always fails", 1, true) then
    fails = fails + 1
  elseif status == 429 and body:find("too many attempts", 1, true) then
    throttled = throttled + 1
  else
    unexpected = unexpected + 1
    last_unexpected = status .. " " .. body:sub(1, 80):gsub("%c", " ")
  end
end

function done(summary, latency, requests)
  local t = {ok = 0, fails = 0, throttled = 0, unexpected = 0}
  local last = ""
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + thread:get(k)
    end
    if thread:get("last_unexpected") ~= "" then
      last = thread:get("last_unexpected")
    end
  end
  for _, k in ipairs({"ok", "fails", "throttled", "unexpected"}) do
    io.write(string.format("soak-lua: %s=%d\n", k, t[k]))
  end
  io.write(string.format("soak-lua: last_unexpected=%s\n", last))
end
