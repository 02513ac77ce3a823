-- consumers.lua: forgets the consumers of workers that are gone
--
-- Deletes the group's consumers that have nothing pending and have been
-- silent that long: the names of workers gone (hostname:pid is new with
-- each start).  One with entries pending stays until reclaim empties it.
--
-- KEYS[1] stream
-- ARGV[1] group
-- ARGV[2] consumer         this worker's consumer name
-- ARGV[3] idle             ms
--
-- Returns how many went.

local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
    local t = {}
    for i = 1, #c, 2 do
        t[c[i]] = c[i + 1]
    end
    if t['pending'] == 0 and t['idle'] > tonumber(idle)
       and t['name'] ~= consumer then
        redis.call('XGROUP', 'DELCONSUMER', stream, group, t['name'])
        n = n + 1
    end
end
return n
