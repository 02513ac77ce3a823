-- due.lua: retries whose time has come
--
-- Takes the due retries that are this consumer's, or whose consumer has
-- been silent for min-idle.
--
-- KEYS[1] stream           the group's stream
-- KEYS[2] retries          checkout:worker:retry:<group>
-- KEYS[3] dlq              the dead-letter stream
-- ARGV[1] group
-- ARGV[2] consumer         this worker's consumer name
-- ARGV[3] now_ms           Unix ms
-- ARGV[4] min_idle         ms
-- ARGV[5] count            at most this many
-- ARGV[6] now              RFC 3339 with ms
-- ARGV[7] stream_name      the stream, as a dead letter names it
--
-- Returns {{id, fields or false (deleted, dead-lettered), delivery
-- count}, ...}.

local due = redis.call('ZRANGEBYSCORE', retries, '-inf', now_ms,
                       'LIMIT', 0, tonumber(count))
local out = {}
for _, id in ipairs(due) do
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    if #p == 0 then
        redis.call('ZREM', retries, id)
    elseif p[1][2] == consumer or p[1][3] >= tonumber(min_idle) then
        redis.call('ZREM', retries, id)
        local e = redis.call('XCLAIM', stream, group, consumer, 0, id)
        if #e == 0 then
            dead_deleted(dlq, group, stream_name, id, p[1][4], now,
                         consumer)
            out[#out + 1] = {id, false, p[1][4]}
        else
            out[#out + 1] = {id, e[1][2], p[1][4] + 1}
        end
    end
end
return out
