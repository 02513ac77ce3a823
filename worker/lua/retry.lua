-- retry.lua: an attempt failed and the entry waits for its next one
--
-- KEYS[1] retries          checkout:worker:retry:<group>
-- KEYS[2] state            checkout:<ce_subject>, or ''
-- ARGV[1] group
-- ARGV[2] id               the entry's id
-- ARGV[3] due              Unix ms of the next attempt

redis.call('ZADD', retries, due, id)
if redis.call('EXISTS', state) == 1 then
    redis.call('HSET', state, group, 'retrying')
end
return 1
