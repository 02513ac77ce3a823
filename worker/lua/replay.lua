-- replay.lua: dead letters back to the stream they came from
--
-- A dead letter goes back as a new entry (so with a fresh delivery
-- count), marked replay_group <group> so that only the group it died in
-- handles it again, and the checkout's task field is set back to pending.
-- One without fields of its own (deleted_before_delivery) stays.  The
-- stream and the state hash are named from the dead letter's fields: fine
-- on a single Redis, not on a cluster.
--
-- KEYS[1] dlq              the dead-letter stream
-- ARGV[1] one              an id, or '' for a batch
-- ARGV[2] start            a batch's exclusive start
-- ARGV[3] count            a batch's size
-- ARGV[4] stop             a batch's end; '' on the first: the newest dead
--                          letter now, so letters added meanwhile are not
--                          chased
--
-- Returns {replayed, entries looked at, last id looked at, end}.

local entries
local last_id = stop
if one ~= '' then
    entries = redis.call('XRANGE', dlq, one, one)
else
    if last_id == '' then
        local newest = redis.call('XREVRANGE', dlq, '+', '-', 'COUNT', 1)
        if #newest == 0 then
            return {0, 0, '', ''}
        end
        last_id = newest[1][1]
    end
    entries = redis.call('XRANGE', dlq, start, last_id, 'COUNT', count)
end

-- the trailer is the last 14 of a dead letter's fields
local n, last = 0, ''
for _, e in ipairs(entries) do
    local f, nf = e[2], #e[2]
    last = e[1]
    if nf > 14 and f[nf - 13] == 'group' and f[nf - 11] == 'stream' then
        local group, stream, subject = f[nf - 12], f[nf - 10], nil
        local orig = {}
        for i = 1, nf - 14, 2 do
            if f[i] ~= 'replay_group' then
                orig[#orig + 1] = f[i]
                orig[#orig + 1] = f[i + 1]
            end
            if f[i] == 'ce_subject' then
                subject = f[i + 1]
            end
        end
        orig[#orig + 1] = 'replay_group'
        orig[#orig + 1] = group
        redis.call('XADD', stream, '*', unpack(orig))
        redis.call('XDEL', dlq, e[1])
        if subject then
            local k = 'checkout:' .. subject
            if redis.call('EXISTS', k) == 1 then
                redis.call('HSET', k, group, 'pending')
            end
        end
        n = n + 1
    end
end
return {n, #entries, last, last_id}
