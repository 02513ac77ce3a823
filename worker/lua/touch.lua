-- touch.lua: the entries this worker holds are not a crashed consumer's
--
-- Claims each held entry again (JUSTID: the delivery count stays) if it
-- is still this consumer's and still in the stream, which resets its idle
-- time; dead-letters one deleted meanwhile.
--
-- KEYS[1] stream           the group's stream
-- KEYS[2] dlq              the dead-letter stream
-- KEYS[3] retries          checkout:worker:retry:<group>
-- ARGV[1] group
-- ARGV[2] consumer         this worker's consumer name
-- ARGV[3] now              RFC 3339 with ms
-- ARGV[4] stream_name      the stream, as a dead letter names it
-- ARGV[5..] first_id       the ids held
--
-- Returns {ids no longer ours, ids deleted}.

local gone, deleted = {}, {}
for i = first_id, #ARGV do
    local id = ARGV[i]
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    if #p == 0 or p[1][2] ~= consumer then
        gone[#gone + 1] = id
    elseif #redis.call('XRANGE', stream, id, id) == 0 then
        redis.call('XACK', stream, group, id)
        redis.call('ZREM', retries, id)
        dead_deleted(dlq, group, stream_name, id, p[1][4], now, consumer)
        deleted[#deleted + 1] = id
    else
        redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
    end
end
return {gone, deleted}
