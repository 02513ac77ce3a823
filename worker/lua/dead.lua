-- dead.lua: an entry that will not be delivered goes to the dead letters
--
-- The dead letter is the entry's own fields and the worker's trailer
-- (contract/checkout_contract.h, "dead letters"); the entry is
-- acknowledged and leaves the retry schedule.
--
-- KEYS[1] stream           the group's stream
-- KEYS[2] dlq              the dead-letter stream
-- KEYS[3] state            checkout:<ce_subject>, or ''
-- KEYS[4] retries          checkout:worker:retry:<group>
-- ARGV[1] group
-- ARGV[2] id               the entry's id
-- ARGV[3] reason           why it died
-- ARGV[4] attempts
-- ARGV[5] failed_at        RFC 3339 with ms
-- ARGV[6] consumer         this worker's consumer name
-- ARGV[7] stream_name      the stream, as the trailer names it
-- ARGV[8..] first_field    the entry's fields and values

local f = {}
for i = first_field, #ARGV do
    f[#f + 1] = ARGV[i]
end
for _, v in ipairs({'group', group, 'stream', stream_name,
                    'error', reason, 'attempts', attempts,
                    'original_id', id, 'failed_at', failed_at,
                    'consumer', consumer}) do
    f[#f + 1] = v
end

redis.call('XADD', dlq, '*', unpack(f))
redis.call('XACK', stream, group, id)
redis.call('ZREM', retries, id)
if state ~= '' and redis.call('EXISTS', state) == 1 then
    redis.call('HSET', state, group, 'dead')
end
return 1
