-- begin.lua: before an entry is delivered
--
-- KEYS[1] stream           the group's stream
-- KEYS[2] done             checkout:worker:done:<group>:<ce_id>
-- KEYS[3] state            checkout:<ce_subject>, or ''
-- ARGV[1] group
-- ARGV[2] id               the entry's id
-- ARGV[3] attempt          its delivery count
-- ARGV[4] consumer         this worker's consumer name
--
-- Returns 1: done already (and now acknowledged); 2: no longer this
-- consumer's (acknowledged by an earlier outcome whose reply was lost, or
-- taken over by another consumer); 3: deleted from the stream meanwhile
-- (the copy held is dead-lettered); 0: go on.  The task field of a first
-- attempt says pending, while the checkout's state lives.

if redis.call('EXISTS', done) == 1 then
    redis.call('XACK', stream, group, id)
    return 1
end

local p = redis.call('XPENDING', stream, group, id, id, 1)
if #p == 0 or p[1][2] ~= consumer then
    return 2
end
if #redis.call('XRANGE', stream, id, id) == 0 then
    return 3
end

if attempt == '1' and redis.call('EXISTS', state) == 1 then
    redis.call('HSET', state, group, 'pending')
end
return 0
