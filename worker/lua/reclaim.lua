-- reclaim.lua: entries idle longer than min-idle, a crashed consumer's
--
-- KEYS[1] stream           the group's stream
-- KEYS[2] retries          checkout:worker:retry:<group>
-- KEYS[3] dlq              the dead-letter stream
-- ARGV[1] group
-- ARGV[2] consumer         this worker's consumer name
-- ARGV[3] min_idle         ms
-- ARGV[4] cursor           XAUTOCLAIM's start
-- ARGV[5] count            at most this many
-- ARGV[6] now              RFC 3339 with ms
-- ARGV[7] stream_name      the stream, as a dead letter names it
--
-- Redis 7 reports the entries deleted while pending (XAUTOCLAIM's third
-- element) and drops them from the pending list: they are dead-lettered
-- here, their delivery count unknown.  Returns {next cursor, {{id, fields
-- or false, delivery count}, ...}}.

local r = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle,
                     cursor, 'COUNT', count)
local out = {}
for _, e in ipairs(r[2]) do
    local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
    redis.call('ZREM', retries, e[1])
    out[#out + 1] = {e[1], e[2], p[1] and p[1][4] or 1}
end
for _, id in ipairs(r[3] or {}) do
    redis.call('ZREM', retries, id)
    dead_deleted(dlq, group, stream_name, id, 'unknown', now, consumer)
    out[#out + 1] = {id, false, 0}
end
return {r[1], out}
