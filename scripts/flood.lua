-- wrk script for scripts/load.sh: each request presents the next of the well-formed
-- wrong keys listed in the file $FLOOD_KEYS (written by `load_server flood`).
local keys = {}
for line in io.lines(os.getenv("FLOOD_KEYS")) do
    keys[#keys + 1] = line
end
local i = 0

request = function()
    i = i % #keys + 1
    return wrk.format("GET", "/v1/ping", { ["Authorization"] = "Bearer " .. keys[i] })
end
