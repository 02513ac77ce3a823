/* What moves an entry on, each step one Lua script so that Redis sees it
 * whole: the begin check (done record), the outcome (ack + done record +
 * state + emitted events, or the retry schedule, or the dead letter), and
 * the touch that keeps held entries from looking idle. Each outcome is one
 * log line.
 *
 * Keys: the group's stream, its retry schedule, the dead-letter stream, the
 * done record checkout:worker:done:<group>:<ce_id> and the checkout's
 * state hash checkout:<ce_subject> (written only while it exists: it
 * expires with the checkout, and the worker does not bring it back). */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reply.h"
#include "worker.h"

/* KEYS: stream, done record, state hash. ARGV: group, id, attempt,
 * consumer. 1: done already (and now acknowledged); 2: no longer this
 * consumer's (acknowledged by an earlier outcome whose reply was lost, or
 * taken over by another consumer); 3: deleted from the stream meanwhile
 * (the copy held is dead-lettered); 0: go on. */
static const char beginScript[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then "
    "  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) "
    "  return 1 "
    "end "
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) "
    "if #p == 0 or p[1][2] ~= ARGV[4] then return 2 end "
    "if #redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2]) == 0 then "
    "  return 3 "
    "end "
    "if ARGV[3] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then "
    "  redis.call('HSET', KEYS[3], ARGV[1], 'pending') "
    "end "
    "return 0";

/* KEYS: stream, done record, state hash, retry schedule. ARGV: group, id,
 * done TTL ms, now, checkoutStatus or '', orderId or '', parent ce_id,
 * subject, emit count, then type, data, schema version per emit.
 * 1: done; 0: an earlier attempt had finished it (acknowledged only). */
static const char finishScript[] =
    "redis.call('ZREM', KEYS[4], ARGV[2]) "
    "if not redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'NX') then "
    "  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) "
    "  return 0 "
    "end "
    "for i = 1, tonumber(ARGV[9]) do "
    "  local b = 9 + (i - 1) * 3 "
    "  redis.call('XADD', KEYS[1], '*', 'ce_specversion', '1.0', "
    "    'ce_id', ARGV[7] .. ':' .. ARGV[1] .. ':' .. i, "
    "    'ce_type', ARGV[b + 1], "
    "    'ce_source', 'checkout-worker/' .. ARGV[1], 'ce_time', ARGV[4], "
    "    'ce_subject', ARGV[8], 'ce_schemaversion', ARGV[b + 3], "
    "    'content-type', 'application/json', 'data', ARGV[b + 2]) "
    "end "
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) "
    "if redis.call('EXISTS', KEYS[3]) == 1 then "
    "  redis.call('HSET', KEYS[3], ARGV[1], 'done') "
    "  if ARGV[5] ~= '' then "
    "    redis.call('HSET', KEYS[3], 'status', ARGV[5], 'updated', ARGV[4]) "
    "  end "
    "  if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], 'orderId', ARGV[6]) "
    "  end "
    "end "
    "return 1";

/* KEYS: retry schedule, state hash. ARGV: group, id, due time ms. */
static const char retryScript[] =
    "redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2]) "
    "if redis.call('EXISTS', KEYS[2]) == 1 then "
    "  redis.call('HSET', KEYS[2], ARGV[1], 'retrying') "
    "end "
    "return 1";

/* KEYS: stream, dead-letter stream, state hash or '', retry schedule.
 * ARGV: group, id, error, attempts, failed_at, consumer, stream name, then
 * the entry's own fields. */
static const char deadScript[] =
    "local f = {} "
    "for i = 8, #ARGV do f[#f + 1] = ARGV[i] end "
    "for _, v in ipairs({'group', ARGV[1], 'stream', ARGV[7], "
    "    'error', ARGV[3], 'attempts', ARGV[4], 'original_id', ARGV[2], "
    "    'failed_at', ARGV[5], 'consumer', ARGV[6]}) do "
    "  f[#f + 1] = v "
    "end "
    "redis.call('XADD', KEYS[2], '*', unpack(f)) "
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) "
    "redis.call('ZREM', KEYS[4], ARGV[2]) "
    "if KEYS[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then "
    "  redis.call('HSET', KEYS[3], ARGV[1], 'dead') "
    "end "
    "return 1";

/* KEYS: stream, dead-letter stream, retry schedule. ARGV: group,
 * consumer, now (RFC 3339), stream name, then the ids held.
 * Claims each held entry again (JUSTID: the delivery count stays) if it is
 * still this consumer's and still in the stream; dead-letters one deleted
 * meanwhile. Returns {ids no longer ours, ids deleted}. */
static const char touchScript[] =
    "local gone, deleted = {}, {} "
    "for i = 5, #ARGV do "
    "  local id = ARGV[i] "
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) "
    "  if #p == 0 or p[1][2] ~= ARGV[2] then "
    "    gone[#gone + 1] = id "
    "  elseif #redis.call('XRANGE', KEYS[1], id, id) == 0 then "
    "    redis.call('XACK', KEYS[1], ARGV[1], id) "
    "    redis.call('ZREM', KEYS[3], id) "
    LUA_DEAD_DELETED("KEYS[2]", "ARGV[1]", "ARGV[4]", "id", "p[1][4]",
                     "ARGV[3]", "ARGV[2]")
    "    deleted[#deleted + 1] = id "
    "  else "
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID') "
    "  end "
    "end "
    "return {gone, deleted}";

/* An argument vector being built: NUL-terminated copies are not needed,
 * the strings outlive the call (hiredis formats the command at once). */
typedef struct args {
    const char **argv;
    size_t *lens;
    int argc, cap;
} args;

static int argsInit(args *a, int cap) {
    a->argv = malloc(sizeof(char *) * (size_t)cap);
    a->lens = malloc(sizeof(size_t) * (size_t)cap);
    a->argc = 0;
    a->cap = cap;
    return a->argv && a->lens ? 0 : -1;
}

static void argsAdd(args *a, const char *s, size_t len) {
    if (a->argc < a->cap) {
        a->argv[a->argc] = s;
        a->lens[a->argc++] = len;
    }
}

static void argsStr(args *a, const char *s) {
    argsAdd(a, s, strlen(s));
}

static void argsFree(args *a) {
    free(a->argv);
    free(a->lens);
}

/* ---------------------------------------------------------------- log */

static void logTask(logLevel level, const task *t, const char *result) {
    logStart(level);
    logStr("group", t->g->cfg->name);
    logStr("id", t->id);
    if (t->ev.id) logStr("ce_id", t->ev.id);
    if (t->ev.type) logStr("ce_type", t->ev.type);
    logInt("attempt", t->attempt);
    logStr("result", result);
}

static void logDuration(const task *t) {
    logInt("duration_ms", monotonicMs() - t->started_ms);
}

/* Logs a script that failed (no reply, or an error reply). Returns 0 for
 * a usable reply. */
static int scriptFailed(task *t, redisReply *reply, const char *what) {
    if (reply != NULL && reply->type != REDIS_REPLY_ERROR) return 0;
    logStart(reply ? LOG_ERROR : LOG_WARN);
    logStr("msg", reply ? "script failed, the entry stays pending"
                        : "redis link down, the entry waits for it");
    logStr("group", t->g->cfg->name);
    logStr("id", t->id);
    logStr("step", what);
    logStr("error", reply ? reply->str : "redis link down");
    logEnd();
    return 1;
}

/* After a script failed: with no reply (the link went down) the task
 * waits for the link and starts over; with an error reply (Redis refused:
 * out of memory, say) it is let go, its entry pending, and reclaim brings
 * it back after min-idle rather than at once. */
static void afterFailure(task *t, redisReply *reply) {
    if (reply == NULL)
        consumerTaskRequeue(t);
    else
        consumerTaskDone(t);
}

/* Sends EVAL 'script' with the arguments of 'a' from its third on (the
 * first two are EVAL and the script). Returns linkCommand()'s result. */
static int evalScript(redisLink *l, const char *script, args *a,
                      linkReplyProc *fn, void *privdata) {
    a->argv[0] = "EVAL";
    a->lens[0] = 4;
    a->argv[1] = script;
    a->lens[1] = strlen(script);
    return linkCommand(l, fn, privdata, a->argc, a->argv, a->lens);
}

/* Sends a step's script for the task; when it cannot go out, the task
 * waits for the link and -1 says so (the caller frees 'privdata' then). */
static int sendScript(task *t, const char *script, args *a,
                      linkReplyProc *fn, void *privdata, const char *what) {
    if (evalScript(t->g->w->cmd, script, a, fn, privdata) == 0) return 0;
    scriptFailed(t, NULL, what);
    consumerTaskRequeue(t);
    return -1;
}

static void keyDone(char *buf, size_t size, const task *t) {
    snprintf(buf, size, "checkout:worker:done:%s:%s", t->g->cfg->name,
             t->ev.id);
}

static void keyState(char *buf, size_t size, const task *t) {
    if (t->has_event)
        snprintf(buf, size, "checkout:%s", t->ev.subject);
    else
        buf[0] = '\0';
}

/* --------------------------------------------------------------- begin */

static void onBegin(redisLink *l, redisReply *reply, void *privdata) {
    task *t = privdata;

    UNUSED(l);
    if (scriptFailed(t, reply, "begin")) {
        afterFailure(t, reply);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 3) {
        stateDead(t, "deleted_before_delivery");
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 2) {
        logTask(LOG_INFO, t, "released");
        logStr("reason", "no longer pending for this consumer");
        logEnd();
        consumerTaskDone(t);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        t->g->stats.processed++;
        t->g->stats.duplicates++;
        logTask(LOG_INFO, t, "duplicate");
        logStr("reason", "done record found: acknowledged without a call");
        logEnd();
        consumerTaskDone(t);
        return;
    }
    consumerBegun(t);
}

void stateBegin(task *t) {
    char done[700], state[400], attempt[16];
    args a;

    if (argsInit(&a, 10) != 0) {
        consumerTaskRequeue(t);
        return;
    }
    keyDone(done, sizeof(done), t);
    keyState(state, sizeof(state), t);
    snprintf(attempt, sizeof(attempt), "%d", t->attempt);
    a.argc = 2;
    argsStr(&a, "3");
    argsStr(&a, t->g->cfg->stream);
    argsStr(&a, done);
    argsStr(&a, state);
    argsStr(&a, t->g->cfg->name);
    argsStr(&a, t->id);
    argsStr(&a, attempt);
    argsStr(&a, t->g->w->consumer);
    sendScript(t, beginScript, &a, onBegin, t, "begin");
    argsFree(&a);
}

/* -------------------------------------------------------------- finish */

static void onFinish(redisLink *l, redisReply *reply, void *privdata) {
    task *t = privdata;
    group *g = t->g;

    UNUSED(l);
    if (scriptFailed(t, reply, "finish")) {
        afterFailure(t, reply);
        return;
    }
    g->stats.processed++;
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        g->stats.duplicates++;
        logTask(LOG_INFO, t, "duplicate");
        logStr("reason", "finished meanwhile by another attempt");
    } else {
        g->stats.succeeded++;
        logTask(LOG_INFO, t, "done");
    }
    logInt("status", t->status);
    logDuration(t);
    logEnd();
    consumerTaskDone(t);
}

void stateFinish(task *t, const handlerReply *reply) {
    char done[700], state[400], ttl[24], now[40], nemit[16];
    args a;
    int i;

    t->state = TASK_FINISHING;
    if (reply->nemit > 0 &&
        strlen(t->ev.id) + strlen(t->g->cfg->name) + 8 > EVENT_MAX_VALUE) {
        /* the emitted ids would be too long for any group to accept */
        stateDead(t, "bad_reply: the parent ce_id is too long to derive "
                     "emitted ids from");
        return;
    }
    if (argsInit(&a, 16 + 3 * reply->nemit) != 0) {
        consumerTaskRequeue(t);
        return;
    }
    keyDone(done, sizeof(done), t);
    keyState(state, sizeof(state), t);
    snprintf(ttl, sizeof(ttl), "%lld", t->g->w->cfg->done_ttl_ms);
    formatTime(now, sizeof(now), nowMs());
    snprintf(nemit, sizeof(nemit), "%d", reply->nemit);
    a.argc = 2;
    argsStr(&a, "4");
    argsStr(&a, t->g->cfg->stream);
    argsStr(&a, done);
    argsStr(&a, state);
    argsStr(&a, t->g->retry_key);
    argsStr(&a, t->g->cfg->name);
    argsStr(&a, t->id);
    argsStr(&a, ttl);
    argsStr(&a, now);
    argsStr(&a, reply->checkout_status ? reply->checkout_status : "");
    argsStr(&a, reply->order_id ? reply->order_id : "");
    argsStr(&a, t->ev.id);
    argsStr(&a, t->ev.subject);
    argsStr(&a, nemit);
    for (i = 0; i < reply->nemit; i++) {
        argsStr(&a, reply->emit[i].type);
        argsStr(&a, reply->emit[i].data);
        argsStr(&a, reply->emit[i].schemaversion
                        ? reply->emit[i].schemaversion : "1");
    }
    sendScript(t, finishScript, &a, onFinish, t, "finish");
    argsFree(&a);
}

/* --------------------------------------------------------------- retry */

typedef struct retryCall {
    task *t;
    long long due_ms, delay_ms;
    char error[300];
} retryCall;

static void onRetry(redisLink *l, redisReply *reply, void *privdata) {
    retryCall *rc = privdata;
    task *t = rc->t;
    group *g = t->g;

    UNUSED(l);
    if (scriptFailed(t, reply, "retry")) {
        afterFailure(t, reply);
    } else {
        g->stats.retried++;
        logTask(LOG_WARN, t, "retry");
        logStr("error", rc->error);
        if (t->status) logInt("status", t->status);
        logInt("next_ms", rc->delay_ms);
        logDuration(t);
        logEnd();
        consumerTaskRetrying(t, rc->due_ms);
    }
    free(rc);
}

void stateRetry(task *t, long long delay_ms, const char *error) {
    char state[400], due[24];
    retryCall *rc = malloc(sizeof(*rc));
    args a;

    t->state = TASK_FINISHING;
    if (rc == NULL || argsInit(&a, 8) != 0) {
        free(rc);
        consumerTaskRequeue(t);
        return;
    }
    rc->t = t;
    rc->delay_ms = delay_ms;
    rc->due_ms = nowMs() + delay_ms;
    snprintf(rc->error, sizeof(rc->error), "%s", error);
    keyState(state, sizeof(state), t);
    snprintf(due, sizeof(due), "%lld", rc->due_ms);
    a.argc = 2;
    argsStr(&a, "2");
    argsStr(&a, t->g->retry_key);
    argsStr(&a, state);
    argsStr(&a, t->g->cfg->name);
    argsStr(&a, t->id);
    argsStr(&a, due);
    if (sendScript(t, retryScript, &a, onRetry, rc, "retry") != 0) free(rc);
    argsFree(&a);
}

/* ---------------------------------------------------------------- dead */

typedef struct deadCall {
    task *t;
    char error[400];
} deadCall;

static void onDead(redisLink *l, redisReply *reply, void *privdata) {
    deadCall *dc = privdata;
    task *t = dc->t;
    group *g = t->g;

    UNUSED(l);
    if (scriptFailed(t, reply, "dead-letter")) {
        free(dc);
        afterFailure(t, reply);
        return;
    }
    g->stats.processed++;
    g->stats.dead_lettered++;
    logTask(LOG_ERROR, t, "dead");
    logStr("error", dc->error);
    if (t->status) logInt("status", t->status);
    logDuration(t);
    logEnd();
    free(dc);
    consumerTaskDone(t);
}

void stateDead(task *t, const char *error) {
    char state[400], attempts[16], failed_at[40];
    deadCall *dc = malloc(sizeof(*dc));
    args a;
    size_t i;

    t->state = TASK_FINISHING;
    if (dc == NULL || argsInit(&a, 16 + (int)t->nfields) != 0) {
        free(dc);
        consumerTaskRequeue(t);
        return;
    }
    dc->t = t;
    snprintf(dc->error, sizeof(dc->error), "%s", error);
    keyState(state, sizeof(state), t);
    snprintf(attempts, sizeof(attempts), "%d", t->attempt);
    formatTime(failed_at, sizeof(failed_at), nowMs());
    a.argc = 2;
    argsStr(&a, "4");
    argsStr(&a, t->g->cfg->stream);
    argsStr(&a, t->g->w->cfg->dead_letter_stream);
    argsStr(&a, state);
    argsStr(&a, t->g->retry_key);
    argsStr(&a, t->g->cfg->name);
    argsStr(&a, t->id);
    argsStr(&a, dc->error);
    argsStr(&a, attempts);
    argsStr(&a, failed_at);
    argsStr(&a, t->g->w->consumer);
    argsStr(&a, t->g->cfg->stream);
    for (i = 0; i < t->nfields; i++) argsAdd(&a, t->fields[i], t->lens[i]);
    if (sendScript(t, deadScript, &a, onDead, dc, "dead-letter") != 0)
        free(dc);
    argsFree(&a);
}

/* ---------------------------------------------------------------- skip */

typedef struct skipCall {
    task *t;
    const char *why;
} skipCall;

static void onSkip(redisLink *l, redisReply *reply, void *privdata) {
    skipCall *sc = privdata;
    task *t = sc->t;

    UNUSED(l);
    if (scriptFailed(t, reply, "skip")) {
        free(sc);
        afterFailure(t, reply);
        return;
    }
    t->g->stats.processed++;
    t->g->stats.skipped++;
    logTask(LOG_INFO, t, "skipped");
    logStr("reason", sc->why);
    logEnd();
    free(sc);
    consumerTaskDone(t);
}

void stateSkip(task *t, const char *why) {
    const char *argv[4] = {"XACK", t->g->cfg->stream, t->g->cfg->name,
                           t->id};
    skipCall *sc = malloc(sizeof(*sc));

    if (sc == NULL) {
        consumerTaskRequeue(t);
        return;
    }
    sc->t = t;
    sc->why = why;
    if (linkCommandStrings(t->g->w->cmd, onSkip, sc, 4, argv) != 0) {
        scriptFailed(t, NULL, "skip");
        free(sc);
        consumerTaskRequeue(t);
    }
}

/* --------------------------------------------------------------- touch */

/* The outcome of an entry a script found deleted from the stream while
 * pending, and dead-lettered: 'via' is the script that found it. */
void stateDeleted(group *g, const char *id, const char *via) {
    g->stats.processed++;
    g->stats.dead_lettered++;
    logStart(LOG_ERROR);
    logStr("group", g->cfg->name);
    logStr("id", id);
    logStr("result", "deleted");
    logStr("error", "deleted_before_delivery");
    logStr("via", via);
    logEnd();
}

/* Lets go of a held task whose entry is not this consumer's any more, or
 * was deleted (and dead-lettered by the touch script); one in flight
 * finishes, its outcome scripts are safe either way. */
static void releaseHeld(group *g, redisReply *ids, int deleted) {
    size_t i;
    task *t;

    if (ids->type != REDIS_REPLY_ARRAY) return;
    for (i = 0; i < ids->elements; i++) {
        if (ids->element[i]->type != REDIS_REPLY_STRING) continue;
        for (t = g->tasks; t; t = t->next)
            if (strcmp(t->id, ids->element[i]->str) == 0) break;
        if (deleted) stateDeleted(g, ids->element[i]->str, "touch");
        if (t && (t->state == TASK_WAITING || t->state == TASK_RETRYING)) {
            if (!deleted) {
                logTask(LOG_WARN, t, "released");
                logStr("reason", "no longer pending for this consumer");
                logEnd();
            }
            consumerTaskDone(t);
        }
    }
}

static void onTouch(redisLink *l, redisReply *reply, void *privdata) {
    group *g = privdata;

    UNUSED(l);
    g->touching = 0;
    if (reply == NULL) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        logMsg(LOG_WARN, "touching held entries of group %s failed: %s",
               g->cfg->name, reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) return;
    releaseHeld(g, reply->element[0], 0);
    releaseHeld(g, reply->element[1], 1);
}

/* Claims the group's held entries again for this consumer (JUSTID: their
 * delivery count stays), which resets their idle time: an entry waiting
 * behind its subject, or for its retry, is not a crashed consumer's. */
void stateTouch(group *g) {
    char now[40];
    const task *t;
    args a;
    int n = 0;

    for (t = g->tasks; t; t = t->next) n++;
    if (n == 0 || g->touching || argsInit(&a, n + 9) != 0) return;
    formatTime(now, sizeof(now), nowMs());
    a.argc = 2;
    argsStr(&a, "3");
    argsStr(&a, g->cfg->stream);
    argsStr(&a, g->w->cfg->dead_letter_stream);
    argsStr(&a, g->retry_key);
    argsStr(&a, g->cfg->name);
    argsStr(&a, g->w->consumer);
    argsStr(&a, now);
    argsStr(&a, g->cfg->stream);
    for (t = g->tasks; t; t = t->next) argsStr(&a, t->id);
    if (evalScript(g->w->cmd, touchScript, &a, onTouch, g) == 0)
        g->touching = 1;
    argsFree(&a);
}
