-- wrk script for scripts/load.sh: each request presents the next of the well-formed
-- wrong keys listed in the file $FLOOD_KEYS (written by `load_server flood`). The
-- requests are formatted once per thread, in init (after wrk has set the Host header):
-- formatting one per request took load-generator time from the valid traffic that
-- shares its core.
local requests = {}
local i = 0

init = function(args)
    for line in io.lines(os.getenv("FLOOD_KEYS")) do
        requests[#requests + 1] = wrk.format("GET", "/v1/ping", { ["Authorization"] = "Bearer " .. line })
    end
end

request = function()
    i = i % #requests + 1
    return requests[i]
end
