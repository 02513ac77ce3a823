-- retention.lua: trims the stream below what any group still needs
--
-- Trims below the oldest entry any group of the stream (the worker's or
-- not) still needs: its oldest pending entry, or the one after its
-- last-delivered id; never above min_id.
--
-- KEYS[1] stream
-- ARGV[1] min_id           "<now - retention>-0": age alone allows below
--
-- Returns the number of entries trimmed.

if redis.call('EXISTS', stream) == 0 then
    return 0
end
local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then
    return 0
end

local dash = string.find(min_id, '-', 1, true)
local bms = tonumber(string.sub(min_id, 1, dash - 1))
local bseq = 0

local function consider(entry, inc)
    local d = string.find(entry, '-', 1, true)
    local ms = tonumber(string.sub(entry, 1, d - 1))
    local seq = tonumber(string.sub(entry, d + 1)) + inc
    if ms < bms or (ms == bms and seq < bseq) then
        bms, bseq = ms, seq
    end
end

for _, g in ipairs(groups) do
    local t = {}
    for i = 1, #g, 2 do
        t[g[i]] = g[i + 1]
    end
    if t['pending'] > 0 then
        consider(redis.call('XPENDING', stream, t['name'])[2], 0)
    else
        consider(t['last-delivered-id'], 1)
    end
end
return redis.call('XTRIM', stream, 'MINID',
                  string.format('%.0f-%.0f', bms, bseq))
