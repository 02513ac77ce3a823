-- gate.lua
--
-- The idempotency gate, atomic in Redis: a new key is taken for this
-- request, with the body's fingerprint; a known key answers what became
-- of it.  A gate that runs after its request gave up (Redis was paused)
-- takes nothing: the client was told that nothing was done.  Fields:
-- contract/checkout_contract.h.
--
-- KEYS[1] record               checkout:idem:<location>:<key>
-- ARGV[1] fingerprint          the request body's
-- ARGV[2] hold                 ms a running checkout holds the key
-- ARGV[3] give_up              Unix ms after which the request gave up
-- ARGV[4] id                   the checkout's id, whose record it is
--
-- Returns {'late'}, {'new'}, {'reused'} (another body), {'running'}, or
-- {'done', status, body, location, retry_after}.

local now = redis.call('TIME')
if now[1] * 1000 + math.floor(now[2] / 1000) > tonumber(give_up) then
    return {'late'}
end

local v = redis.call('HMGET', record, 'fingerprint', 'state', 'status',
                     'body', 'location', 'retryAfter')
if not v[1] then
    redis.call('HSET', record, 'fingerprint', fingerprint, 'state', 'running',
               'checkoutId', id)
    redis.call('PEXPIRE', record, hold)
    return {'new'}
end

if v[1] ~= fingerprint then
    return {'reused'}
end
if v[2] ~= 'done' then
    return {'running'}
end
return {'done', v[3], v[4], v[5] or '', v[6] or ''}
