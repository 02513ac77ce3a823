-- dead_deleted.lua: a prelude of touch.lua, due.lua and reclaim.lua
--
-- The dead letter of an entry deleted from the stream while it was
-- pending: the worker's trailer alone, no fields of the event to keep
-- (contract/checkout_contract.h, "dead letters").

local function dead_deleted(dlq, group, stream_name, id, attempts, now,
                            consumer)
    redis.call('XADD', dlq, '*', 'group', group, 'stream', stream_name,
               'error', 'deleted_before_delivery', 'attempts', attempts,
               'original_id', id, 'failed_at', now, 'consumer', consumer)
end
