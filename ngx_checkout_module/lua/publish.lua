-- publish.lua
--
-- The event a checkout's outcome owes, the checkout's state and its
-- idempotent reply, written once.  The state's "eventId", written last,
-- is the guard: a replayed spool line appends nothing again, and a run
-- that failed half-way (Redis does not roll back) is run again whole.
-- The idempotency record is only touched when it is this checkout's, or
-- gone.  Keys and fields: contract/checkout_contract.h.
--
-- KEYS[1] stream               the checkout stream
-- KEYS[2] state                checkout:<id>
-- KEYS[3] idempotency          checkout:idem:<location>:<key>, or ''
-- ARGV[1] id                   the checkout's id, also its event's ce_id
-- ARGV[2] state_ttl            seconds the state hash lives
-- ARGV[3] status               the outcome
-- ARGV[4] time                 now, RFC 3339 with ms
-- ARGV[5] order_id             or ''
-- ARGV[6] step                 the decisive step, or '' when confirmed
-- ARGV[7] maxlen               the stream's approximate cap, '0': none
-- ARGV[8] reply_status         the reply's HTTP status; '' releases the key
-- ARGV[9] reply_body
-- ARGV[10] reply_location
-- ARGV[11] reply_retry_after
-- ARGV[12] idempotency_ttl     ms the stored reply is kept
-- ARGV[13] fingerprint         the request body's
-- ARGV[14..] first_field       the entry's fields and values; none: no event

if redis.call('HEXISTS', state, 'eventId') == 1 then
    return 0
end

if #ARGV >= first_field then
    if maxlen ~= '0' then
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
                   unpack(ARGV, first_field))
    else
        redis.call('XADD', stream, '*', unpack(ARGV, first_field))
    end
end

if idempotency ~= '' then
    local owner = redis.call('HGET', idempotency, 'checkoutId')
    if not owner or owner == id then
        if reply_status == '' then
            redis.call('DEL', idempotency)
        else
            redis.call('HSET', idempotency, 'state', 'done',
                       'status', reply_status, 'body', reply_body,
                       'location', reply_location,
                       'retryAfter', reply_retry_after,
                       'fingerprint', fingerprint, 'checkoutId', id)
            redis.call('PEXPIRE', idempotency, idempotency_ttl)
        end
    end
end

redis.call('HSET', state, 'status', status, 'created', time, 'updated', time)
if order_id ~= '' then
    redis.call('HSET', state, 'orderId', order_id)
end
if step ~= '' then
    redis.call('HSET', state, 'step', step)
end
redis.call('HSET', state, 'eventId', id)
redis.call('EXPIRE', state, state_ttl)

return 1
