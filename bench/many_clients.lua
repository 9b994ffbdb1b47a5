-- many_clients.lua -- wrk script of the many-clients lines
-- (bench/throughput.sh): every request names a client in
-- X-Forwarded-For, as a proxy in front of the server would, taking the
-- clients in turn (round robin, the same order every run): with N
-- clients (the script's argument, `wrk ... URL -- N`, default 10,000)
-- each is seen once every N requests.  The clients are 198.18.0.1,
-- 198.18.0.2, ... in the benchmark range 198.18.0.0/15 (RFC 2544), which
-- holds 131,070 of them.  The requests are formatted once, in init: wrk
-- then sends a prepared string, so the script costs wrk little.

local requests = {}
local count = 0
local next_one = 0

function init(args)
   count = tonumber(args[1] or "10000")
   if count == nil or count < 1 or count > 131070 then
      error("many_clients.lua: the number of clients must be 1..131070")
   end
   for i = 1, count do
      local addr = string.format("198.%d.%d.%d",
                                 18 + math.floor(i / 65536),
                                 math.floor(i / 256) % 256, i % 256)
      requests[i - 1] = wrk.format(nil, nil,
                                   { ["X-Forwarded-For"] = addr })
   end
end

function request()
   local r = requests[next_one]
   next_one = (next_one + 1) % count
   return r
end
