-- finish.lua: an entry delivered, its receiver answered 2xx
--
-- The done record is taken first: an attempt that finds it taken was
-- beaten by an earlier one and only acknowledges.  Emitted events get ids
-- derived from the parent's, so a redelivery cannot emit twice.
--
-- KEYS[1] stream           the group's stream
-- KEYS[2] done             checkout:worker:done:<group>:<ce_id>
-- KEYS[3] state            checkout:<ce_subject>, or ''
-- KEYS[4] retries          checkout:worker:retry:<group>
-- ARGV[1] group
-- ARGV[2] id               the entry's id
-- ARGV[3] done_ttl         ms the done record lives
-- ARGV[4] now              RFC 3339 with ms
-- ARGV[5] checkout_status  the receiver's checkoutStatus, or ''
-- ARGV[6] order_id         the receiver's orderId, or ''
-- ARGV[7] parent_id        the entry's ce_id
-- ARGV[8] subject          the entry's ce_subject
-- ARGV[9] emit_count       how many events the receiver emits
-- ARGV[10..] first_emit    per event: its ce_type, data, schema version
--
-- Returns 1: done; 0: an earlier attempt had finished it.

redis.call('ZREM', retries, id)
if not redis.call('SET', done, id, 'PX', done_ttl, 'NX') then
    redis.call('XACK', stream, group, id)
    return 0
end

for i = 1, tonumber(emit_count) do
    local at = first_emit + (i - 1) * 3
    redis.call('XADD', stream, '*', 'ce_specversion', '1.0',
               'ce_id', parent_id .. ':' .. group .. ':' .. i,
               'ce_type', ARGV[at],
               'ce_source', 'checkout-worker/' .. group, 'ce_time', now,
               'ce_subject', subject, 'ce_schemaversion', ARGV[at + 2],
               'content-type', 'application/json', 'data', ARGV[at + 1])
end
redis.call('XACK', stream, group, id)

if redis.call('EXISTS', state) == 1 then
    redis.call('HSET', state, group, 'done')
    if checkout_status ~= '' then
        redis.call('HSET', state, 'status', checkout_status, 'updated', now)
    end
    if order_id ~= '' then
        redis.call('HSET', state, 'orderId', order_id)
    end
end
return 1
