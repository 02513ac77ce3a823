/* What moves a held entry on, each step one Lua script so that Redis sees
 * it whole (lua/begin.lua, finish.lua, retry.lua, dead.lua, touch.lua): the
 * begin check (done record), the outcome (ack + done record + state +
 * emitted events, or the retry schedule, or the dead letter), and the
 * touch that keeps held entries from looking idle. Each call reports what
 * Redis did to its caller's callback (state.h); the outcome's log line is
 * the caller's, a script that fails is logged here.
 *
 * Keys: the group's stream, its retry schedule, the dead-letter stream, the
 * done record and the checkout's state hash (docs/contract.md), the latter
 * written only while it exists: it expires with the checkout, and the
 * worker does not bring it back. */

#define _POSIX_C_SOURCE 200809L

#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "begin.lua.h"
#include "checkout_contract.h"
#include "dead.lua.h"
#include "finish.lua.h"
#include "log.h"
#include "retry.lua.h"
#include "script.h"
#include "touch.lua.h"
#include "util.h"

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

static void keyDone(char *buf, size_t size, const task *t) {
    snprintf(buf, size, CHECKOUT_DONE_KEY_PREFIX "%s:%s", t->g->cfg->name,
             t->ev.id);
}

static void keyState(char *buf, size_t size, const task *t) {
    if (t->has_event)
        snprintf(buf, size, CHECKOUT_STATE_KEY_PREFIX "%s", t->ev.subject);
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

/* Sends the script command 's' as stepSend() does, once it is whole. */
static int stepEval(task *t, const scriptCmd *s, const char *step,
                    stateOutcome ok, stateDoneProc *fn) {
    if (scriptCheck(s) != 0) return -1;
    return stepSend(t, s->argc, s->argv, s->lens, step, ok, fn);
}

/* --------------------------------------------------------------- steps */

/* Checks that 't' is still to be delivered: no done record, still pending
 * for this consumer, still in the stream; on its first attempt marks the
 * checkout's task pending. Returns 0, or -1 (see stepSend). */
int stateBegin(task *t, stateDoneProc *fn) {
    char done[700], state[400], attempt[16];
    scriptCmd s;
    int rc = -1;

    if (scriptInit(&s, SCRIPT_BEGIN_LUA, SCRIPT_BEGIN_NUMKEYS,
                   SCRIPT_BEGIN_ARGC) == 0) {
        keyDone(done, sizeof(done), t);
        keyState(state, sizeof(state), t);
        snprintf(attempt, sizeof(attempt), "%d", t->attempt);
        scriptSet(&s, SCRIPT_BEGIN_STREAM, t->g->cfg->stream);
        scriptSet(&s, SCRIPT_BEGIN_DONE, done);
        scriptSet(&s, SCRIPT_BEGIN_STATE, state);
        scriptSet(&s, SCRIPT_BEGIN_GROUP, t->g->cfg->name);
        scriptSet(&s, SCRIPT_BEGIN_ID, t->id);
        scriptSet(&s, SCRIPT_BEGIN_ATTEMPT, attempt);
        scriptSet(&s, SCRIPT_BEGIN_CONSUMER, t->g->w->consumer);
        rc = stepEval(t, &s, "begin", STATE_BEGUN, fn);
    }
    scriptFree(&s);
    return rc;
}

/* Records 't' done as 'reply' asks: the done record, the checkout's state
 * hash, the events it emits, the acknowledgement. Returns 0, or -1 (see
 * stepSend). */
int stateFinish(task *t, const handlerReply *reply, stateDoneProc *fn) {
    char done[700], state[400], ttl[24], now[40], nemit[16];
    scriptCmd s;
    int i, at, rc = -1;

    if (scriptInit(&s, SCRIPT_FINISH_LUA, SCRIPT_FINISH_NUMKEYS,
                   SCRIPT_FINISH_ARGC + 3 * reply->nemit) == 0) {
        keyDone(done, sizeof(done), t);
        keyState(state, sizeof(state), t);
        snprintf(ttl, sizeof(ttl), "%lld", t->g->w->cfg->done_ttl_ms);
        formatTime(now, sizeof(now), nowMs());
        snprintf(nemit, sizeof(nemit), "%d", reply->nemit);
        scriptSet(&s, SCRIPT_FINISH_STREAM, t->g->cfg->stream);
        scriptSet(&s, SCRIPT_FINISH_DONE, done);
        scriptSet(&s, SCRIPT_FINISH_STATE, state);
        scriptSet(&s, SCRIPT_FINISH_RETRIES, t->g->retry_key);
        scriptSet(&s, SCRIPT_FINISH_GROUP, t->g->cfg->name);
        scriptSet(&s, SCRIPT_FINISH_ID, t->id);
        scriptSet(&s, SCRIPT_FINISH_DONE_TTL, ttl);
        scriptSet(&s, SCRIPT_FINISH_NOW, now);
        scriptSet(&s, SCRIPT_FINISH_CHECKOUT_STATUS,
                  reply->checkout_status ? reply->checkout_status : "");
        scriptSet(&s, SCRIPT_FINISH_ORDER_ID,
                  reply->order_id ? reply->order_id : "");
        scriptSet(&s, SCRIPT_FINISH_PARENT_ID, t->ev.id);
        scriptSet(&s, SCRIPT_FINISH_SUBJECT, t->ev.subject);
        scriptSet(&s, SCRIPT_FINISH_EMIT_COUNT, nemit);
        for (i = 0; i < reply->nemit; i++) {
            at = SCRIPT_FINISH_FIRST_EMIT + 3 * i;
            scriptSet(&s, at, reply->emit[i].type);
            scriptSet(&s, at + 1, reply->emit[i].data);
            scriptSet(&s, at + 2, reply->emit[i].schemaversion
                                      ? reply->emit[i].schemaversion
                                      : CHECKOUT_SCHEMA_VERSION);
        }
        rc = stepEval(t, &s, "finish", STATE_DONE, fn);
    }
    scriptFree(&s);
    return rc;
}

/* Puts 't' in the group's retry schedule at 't->due_ms' and marks the
 * checkout's task retrying. Returns 0, or -1 (see stepSend). */
int stateRetry(task *t, stateDoneProc *fn) {
    char state[400], due[24];
    scriptCmd s;
    int rc = -1;

    if (scriptInit(&s, SCRIPT_RETRY_LUA, SCRIPT_RETRY_NUMKEYS,
                   SCRIPT_RETRY_ARGC) == 0) {
        keyState(state, sizeof(state), t);
        snprintf(due, sizeof(due), "%lld", t->due_ms);
        scriptSet(&s, SCRIPT_RETRY_RETRIES, t->g->retry_key);
        scriptSet(&s, SCRIPT_RETRY_STATE, state);
        scriptSet(&s, SCRIPT_RETRY_GROUP, t->g->cfg->name);
        scriptSet(&s, SCRIPT_RETRY_ID, t->id);
        scriptSet(&s, SCRIPT_RETRY_DUE, due);
        rc = stepEval(t, &s, "retry", STATE_RETRYING, fn);
    }
    scriptFree(&s);
    return rc;
}

/* Dead-letters 't' with 'error': its fields and the worker's trailer go to
 * the dead-letter stream, the entry is acknowledged and the checkout's task
 * marked dead. Returns 0, or -1 (see stepSend). */
int stateDead(task *t, const char *error, stateDoneProc *fn) {
    char state[400], attempts[16], failed_at[40];
    scriptCmd s;
    size_t i;
    int rc = -1;

    if (scriptInit(&s, SCRIPT_DEAD_LUA, SCRIPT_DEAD_NUMKEYS,
                   SCRIPT_DEAD_ARGC + (int)t->nfields) == 0) {
        keyState(state, sizeof(state), t);
        snprintf(attempts, sizeof(attempts), "%d", t->attempt);
        formatTime(failed_at, sizeof(failed_at), nowMs());
        scriptSet(&s, SCRIPT_DEAD_STREAM, t->g->cfg->stream);
        scriptSet(&s, SCRIPT_DEAD_DLQ, t->g->w->cfg->dead_letter_stream);
        scriptSet(&s, SCRIPT_DEAD_STATE, state);
        scriptSet(&s, SCRIPT_DEAD_RETRIES, t->g->retry_key);
        scriptSet(&s, SCRIPT_DEAD_GROUP, t->g->cfg->name);
        scriptSet(&s, SCRIPT_DEAD_ID, t->id);
        scriptSet(&s, SCRIPT_DEAD_REASON, error);
        scriptSet(&s, SCRIPT_DEAD_ATTEMPTS, attempts);
        scriptSet(&s, SCRIPT_DEAD_FAILED_AT, failed_at);
        scriptSet(&s, SCRIPT_DEAD_CONSUMER, t->g->w->consumer);
        scriptSet(&s, SCRIPT_DEAD_STREAM_NAME, t->g->cfg->stream);
        for (i = 0; i < t->nfields; i++)
            scriptSetLen(&s, SCRIPT_DEAD_FIRST_FIELD + (int)i, t->fields[i],
                         t->lens[i]);
        rc = stepEval(t, &s, "dead-letter", STATE_DEAD, fn);
    }
    scriptFree(&s);
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
    touchCall *tc = NULL;
    scriptCmd s;
    int n = 0, i = 0;

    for (t = g->tasks; t; t = t->next) n++;
    if (n == 0 || g->touching) return;
    if (scriptInit(&s, SCRIPT_TOUCH_LUA, SCRIPT_TOUCH_NUMKEYS,
                   SCRIPT_TOUCH_ARGC + n) != 0 ||
        (tc = malloc(sizeof(*tc))) == NULL) {
        scriptFree(&s);
        return;
    }
    tc->g = g;
    tc->fn = fn;
    formatTime(now, sizeof(now), nowMs());
    scriptSet(&s, SCRIPT_TOUCH_STREAM, g->cfg->stream);
    scriptSet(&s, SCRIPT_TOUCH_DLQ, g->w->cfg->dead_letter_stream);
    scriptSet(&s, SCRIPT_TOUCH_RETRIES, g->retry_key);
    scriptSet(&s, SCRIPT_TOUCH_GROUP, g->cfg->name);
    scriptSet(&s, SCRIPT_TOUCH_CONSUMER, g->w->consumer);
    scriptSet(&s, SCRIPT_TOUCH_NOW, now);
    scriptSet(&s, SCRIPT_TOUCH_STREAM_NAME, g->cfg->stream);
    for (t = g->tasks; t; t = t->next)
        scriptSet(&s, SCRIPT_TOUCH_FIRST_ID + i++, t->id);
    if (scriptSend(&s, g->w->cmd, onTouch, tc) == 0)
        g->touching = 1;
    else
        free(tc);
    scriptFree(&s);
}
