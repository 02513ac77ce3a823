/* What moves a held entry on, each step one Lua script so that Redis sees
 * it whole: the begin check (done record), the outcome (ack + done record +
 * state + emitted events, or the retry schedule, or the dead letter), and
 * the touch that keeps held entries from looking idle. Each call reports
 * what Redis did to its caller's callback (state.h); the outcome's log
 * line is the caller's, a script that fails is logged here.
 *
 * Keys: the group's stream, its retry schedule, the dead-letter stream, the
 * done record checkout:worker:done:<group>:<ce_id> and the checkout's
 * state hash checkout:<ce_subject> (written only while it exists: it
 * expires with the checkout, and the worker does not bring it back). */

#define _POSIX_C_SOURCE 200809L

#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scripts.h"
#include "util.h"

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

/* A step's command out for a task: how to read its reply, whom to tell. */
typedef struct stateCall {
    task *t;
    const char *step;           /* in log lines: "begin", "finish", ... */
    stateOutcome ok;            /* what a plain success means */
    stateDoneProc *fn;
} stateCall;

/* A touch out for a group. */
typedef struct touchCall {
    group *g;
    stateTouchedProc *fn;
} touchCall;

/* Makes room for 'cap' arguments, the first two for EVAL and the script.
 * Returns 0, or -1 when out of memory. */
static int argsInit(args *a, int cap) {
    a->argv = malloc(sizeof(char *) * (size_t)cap);
    a->lens = malloc(sizeof(size_t) * (size_t)cap);
    a->argc = 2;
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

/* Puts EVAL and 'script' in the two first slots. */
static void argsEval(args *a, const char *script) {
    a->argv[0] = "EVAL";
    a->lens[0] = 4;
    a->argv[1] = script;
    a->lens[1] = strlen(script);
}

static void argsFree(args *a) {
    free(a->argv);
    free(a->lens);
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

/* -------------------------------------------------------------- a step */

/* Logs a step that failed (no reply, or an error reply). Returns 0 for a
 * usable reply. */
static int stepFailed(const task *t, const redisReply *reply,
                      const char *step) {
    if (reply != NULL && reply->type != REDIS_REPLY_ERROR) return 0;
    logStart(reply ? LOG_ERROR : LOG_WARN);
    logStr("msg", reply ? "script failed, the entry stays pending"
                        : "redis link down, the entry waits for it");
    logStr("group", t->g->cfg->name);
    logStr("id", t->id);
    logStr("step", step);
    logStr("error", reply ? reply->str : "redis link down");
    logEnd();
    return 1;
}

/* Reads a usable reply as the step's outcome: the call's 'ok', unless the
 * script's integer code says otherwise (begin: 1, 2, 3; finish: 0). */
static stateOutcome stepOutcome(const stateCall *call,
                                const redisReply *reply) {
    long long code = reply->type == REDIS_REPLY_INTEGER ? reply->integer
                                                        : -1;

    if (call->ok == STATE_BEGUN) {
        if (code == 3) return STATE_DELETED;
        if (code == 2) return STATE_RELEASED;
        if (code == 1) return STATE_ALREADY_DONE;
    } else if (call->ok == STATE_DONE && code == 0) {
        return STATE_DONE_MEANWHILE;
    }
    return call->ok;
}

static void onStep(redisLink *l, redisReply *reply, void *privdata) {
    stateCall *call = privdata;
    task *t = call->t;
    stateDoneProc *fn = call->fn;
    stateOutcome outcome;

    UNUSED(l);
    if (stepFailed(t, reply, call->step))
        outcome = reply ? STATE_REFUSED : STATE_LINK_DOWN;
    else
        outcome = stepOutcome(call, reply);
    free(call);
    fn(t, outcome);
}

/* Sends a step's command for 't' on the commands link; 'fn' gets its
 * outcome, 'ok' on a plain success. 'lens' NULL: NUL-terminated 'argv'.
 * Returns 0, or -1 when out of memory or the link is down (logged); then
 * 'fn' is never called. */
static int stepSend(task *t, int argc, const char **argv, const size_t *lens,
                    const char *step, stateOutcome ok, stateDoneProc *fn) {
    stateCall *call = malloc(sizeof(*call));

    if (call == NULL) return -1;
    call->t = t;
    call->step = step;
    call->ok = ok;
    call->fn = fn;
    if (linkCommand(t->g->w->cmd, onStep, call, argc, argv, lens) == 0)
        return 0;
    stepFailed(t, NULL, step);
    free(call);
    return -1;
}

/* Sends EVAL 'script' with the arguments of 'a' as stepSend() does. */
static int stepEval(task *t, const char *script, args *a, const char *step,
                    stateOutcome ok, stateDoneProc *fn) {
    argsEval(a, script);
    return stepSend(t, a->argc, a->argv, a->lens, step, ok, fn);
}

/* --------------------------------------------------------------- steps */

/* Checks that 't' is still to be delivered: no done record, still pending
 * for this consumer, still in the stream; on its first attempt marks the
 * checkout's task pending. Returns 0, or -1 (see stepSend). */
int stateBegin(task *t, stateDoneProc *fn) {
    char done[700], state[400], attempt[16];
    args a;
    int rc;

    if (argsInit(&a, 10) != 0) {
        argsFree(&a);
        return -1;
    }
    keyDone(done, sizeof(done), t);
    keyState(state, sizeof(state), t);
    snprintf(attempt, sizeof(attempt), "%d", t->attempt);
    argsStr(&a, "3");
    argsStr(&a, t->g->cfg->stream);
    argsStr(&a, done);
    argsStr(&a, state);
    argsStr(&a, t->g->cfg->name);
    argsStr(&a, t->id);
    argsStr(&a, attempt);
    argsStr(&a, t->g->w->consumer);
    rc = stepEval(t, beginScript, &a, "begin", STATE_BEGUN, fn);
    argsFree(&a);
    return rc;
}

/* Records 't' done as 'reply' asks: the done record, the checkout's state
 * hash, the events it emits, the acknowledgement. Returns 0, or -1 (see
 * stepSend). */
int stateFinish(task *t, const handlerReply *reply, stateDoneProc *fn) {
    char done[700], state[400], ttl[24], now[40], nemit[16];
    args a;
    int i, rc;

    if (argsInit(&a, 16 + 3 * reply->nemit) != 0) {
        argsFree(&a);
        return -1;
    }
    keyDone(done, sizeof(done), t);
    keyState(state, sizeof(state), t);
    snprintf(ttl, sizeof(ttl), "%lld", t->g->w->cfg->done_ttl_ms);
    formatTime(now, sizeof(now), nowMs());
    snprintf(nemit, sizeof(nemit), "%d", reply->nemit);
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
    rc = stepEval(t, finishScript, &a, "finish", STATE_DONE, fn);
    argsFree(&a);
    return rc;
}

/* Puts 't' in the group's retry schedule at 't->due_ms' and marks the
 * checkout's task retrying. Returns 0, or -1 (see stepSend). */
int stateRetry(task *t, stateDoneProc *fn) {
    char state[400], due[24];
    args a;
    int rc;

    if (argsInit(&a, 8) != 0) {
        argsFree(&a);
        return -1;
    }
    keyState(state, sizeof(state), t);
    snprintf(due, sizeof(due), "%lld", t->due_ms);
    argsStr(&a, "2");
    argsStr(&a, t->g->retry_key);
    argsStr(&a, state);
    argsStr(&a, t->g->cfg->name);
    argsStr(&a, t->id);
    argsStr(&a, due);
    rc = stepEval(t, retryScript, &a, "retry", STATE_RETRYING, fn);
    argsFree(&a);
    return rc;
}

/* Dead-letters 't' with 'error': its fields and the worker's trailer go to
 * the dead-letter stream, the entry is acknowledged and the checkout's task
 * marked dead. Returns 0, or -1 (see stepSend). */
int stateDead(task *t, const char *error, stateDoneProc *fn) {
    char state[400], attempts[16], failed_at[40];
    args a;
    size_t i;
    int rc;

    if (argsInit(&a, 16 + (int)t->nfields) != 0) {
        argsFree(&a);
        return -1;
    }
    keyState(state, sizeof(state), t);
    snprintf(attempts, sizeof(attempts), "%d", t->attempt);
    formatTime(failed_at, sizeof(failed_at), nowMs());
    argsStr(&a, "4");
    argsStr(&a, t->g->cfg->stream);
    argsStr(&a, t->g->w->cfg->dead_letter_stream);
    argsStr(&a, state);
    argsStr(&a, t->g->retry_key);
    argsStr(&a, t->g->cfg->name);
    argsStr(&a, t->id);
    argsStr(&a, error);
    argsStr(&a, attempts);
    argsStr(&a, failed_at);
    argsStr(&a, t->g->w->consumer);
    argsStr(&a, t->g->cfg->stream);
    for (i = 0; i < t->nfields; i++) argsAdd(&a, t->fields[i], t->lens[i]);
    rc = stepEval(t, deadScript, &a, "dead-letter", STATE_DEAD, fn);
    argsFree(&a);
    return rc;
}

/* Acknowledges 't' without a delivery (not this group's to handle).
 * Returns 0, or -1 (see stepSend). */
int stateSkip(task *t, stateDoneProc *fn) {
    const char *argv[4] = {"XACK", t->g->cfg->stream, t->g->cfg->name,
                           t->id};

    return stepSend(t, 4, argv, NULL, "skip", STATE_SKIPPED, fn);
}

/* --------------------------------------------------------------- touch */

static void replyIds(touchCall *tc, const redisReply *ids, int deleted) {
    size_t i;

    if (ids->type != REDIS_REPLY_ARRAY) return;
    for (i = 0; i < ids->elements; i++)
        if (ids->element[i]->type == REDIS_REPLY_STRING)
            tc->fn(tc->g, ids->element[i]->str, deleted);
}

static void onTouch(redisLink *l, redisReply *reply, void *privdata) {
    touchCall *tc = privdata;
    group *g = tc->g;

    UNUSED(l);
    g->touching = 0;
    if (reply == NULL) {
        free(tc);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        logMsg(LOG_WARN, "touching held entries of group %s failed: %s",
               g->cfg->name, reply->str);
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        replyIds(tc, reply->element[0], 0);
        replyIds(tc, reply->element[1], 1);
    }
    free(tc);
}

/* Claims the group's held entries again for this consumer (JUSTID: their
 * delivery count stays), which resets their idle time: an entry waiting
 * behind its subject, or for its retry, is not a crashed consumer's. 'fn'
 * hears of those that are not ours any more or were deleted. Does nothing
 * when nothing is held, a touch is out, the link is down or memory is out:
 * the next touch comes soon enough. */
void stateTouch(group *g, stateTouchedProc *fn) {
    char now[40];
    const task *t;
    touchCall *tc;
    args a;
    int n = 0;

    for (t = g->tasks; t; t = t->next) n++;
    if (n == 0 || g->touching) return;
    if (argsInit(&a, n + 9) != 0 || (tc = malloc(sizeof(*tc))) == NULL) {
        argsFree(&a);
        return;
    }
    tc->g = g;
    tc->fn = fn;
    formatTime(now, sizeof(now), nowMs());
    argsStr(&a, "3");
    argsStr(&a, g->cfg->stream);
    argsStr(&a, g->w->cfg->dead_letter_stream);
    argsStr(&a, g->retry_key);
    argsStr(&a, g->cfg->name);
    argsStr(&a, g->w->consumer);
    argsStr(&a, now);
    argsStr(&a, g->cfg->stream);
    for (t = g->tasks; t; t = t->next) argsStr(&a, t->id);
    argsEval(&a, touchScript);
    if (linkCommand(g->w->cmd, onTouch, tc, a.argc, a.argv, a.lens) == 0)
        g->touching = 1;
    else
        free(tc);
    argsFree(&a);
}
