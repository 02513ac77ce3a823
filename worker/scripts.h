/* Lua shared by the worker's scripts (state.c, reclaim.c), as C string
 * fragments that a script's text includes. No functions, nothing to own. */

#ifndef CHECKOUT_WORKER_SCRIPTS_H
#define CHECKOUT_WORKER_SCRIPTS_H

/* Lua, for the scripts that find an entry deleted from the stream while
 * still pending: its dead letter, with no fields of the event to keep.
 * The arguments are Lua expressions of the script using it. */
#define LUA_DEAD_DELETED(DLQ, GROUP, STREAM, ID, ATTEMPTS, NOW, CONSUMER) \
    "redis.call('XADD', " DLQ ", '*', 'group', " GROUP ", " \
    "'stream', " STREAM ", 'error', 'deleted_before_delivery', " \
    "'attempts', " ATTEMPTS ", 'original_id', " ID ", " \
    "'failed_at', " NOW ", 'consumer', " CONSUMER ") "

#endif
