/* Getting entries back: retries that are due (from the durable schedule),
 * entries idle longer than min-idle (a crashed or hung consumer's, taken
 * over with XAUTOCLAIM), and retention (XTRIM MINID below what any group
 * still needs); and, on the third timer, the touch of the entries held.
 *
 * An entry that was deleted from the stream while still pending cannot be
 * delivered: Redis 7 reports it (XAUTOCLAIM's third element; XCLAIM leaves
 * it out) and drops it from the pending list, so the scripts dead-letter
 * it there and then, as deleted before delivery. */

#define _POSIX_C_SOURCE 200809L

#include "reclaim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "consumers.lua.h"
#include "due.lua.h"
#include "log.h"
#include "reclaim.lua.h"
#include "retention.lua.h"
#include "script.h"
#include "state.h"
#include "task.h"
#include "util.h"

#define CONSUMER_FORGET_MS (3600 * 1000)

/* ---------------------------------------- due retries and idle entries */

/* Hands each {id, fields or nil, count} of 'list' to the group; a nil
 * means the entry was deleted before delivery (dead-lettered by the
 * script). */
static void adoptAll(group *g, redisReply *list, const char *how) {
    size_t i;

    if (list->type != REDIS_REPLY_ARRAY) return;
    for (i = 0; i < list->elements; i++) {
        redisReply *e = list->element[i], entry, *parts[2];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 3 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        if (e->element[1]->type != REDIS_REPLY_ARRAY) {
            taskDeleted(g, e->element[0]->str, how);
            continue;
        }
        /* the entry as XREADGROUP gives it: [id, [field, value, ...]] */
        memset(&entry, 0, sizeof(entry));
        entry.type = REDIS_REPLY_ARRAY;
        entry.elements = 2;
        parts[0] = e->element[0];
        parts[1] = e->element[1];
        entry.element = parts;
        taskAdopt(g, &entry, e->element[2]->type == REDIS_REPLY_INTEGER
                                 ? e->element[2]->integer : 1);
    }
}

/* Whether a script's reply can be used; logs an error reply (NOGROUP
 * only says the group is being created again: the reader says so). */
static int usable(const group *g, const redisReply *reply, const char *what) {
    if (reply == NULL) return 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOGROUP", 7) != 0)
            logMsg(LOG_ERROR, "%s of group %s: %s", what, g->cfg->name,
                   reply->str);
        return 0;
    }
    return 1;
}

static void onDue(redisLink *l, redisReply *reply, void *privdata) {
    group *g = privdata;

    UNUSED(l);
    g->claiming = 0;
    if (usable(g, reply, "claiming due retries")) adoptAll(g, reply, "retry");
}

/* Claims the group's retries that are due (lua/due.lua): as many as there
 * is room for, plus those this worker holds (the due script must hand them
 * back however full the buffer is, or a subject waiting behind one would
 * wait for good). */
void reclaimDue(group *g) {
    char nowms[24], idle[24], count[16], now[40];
    long long ms;
    scriptCmd s;
    int n = taskRoom(g);

    if (n > g->cfg->concurrency) n = g->cfg->concurrency;
    n += taskHeldDue(g);
    if (g->w->stopping || g->paused || !g->created || g->claiming || n == 0)
        return;
    if (scriptInit(&s, SCRIPT_DUE_LUA, SCRIPT_DUE_NUMKEYS,
                   SCRIPT_DUE_ARGC) == 0) {
        ms = nowMs();
        formatTime(now, sizeof(now), ms);
        snprintf(nowms, sizeof(nowms), "%lld", ms);
        snprintf(idle, sizeof(idle), "%lld", g->cfg->min_idle_ms);
        snprintf(count, sizeof(count), "%d", n);
        scriptSet(&s, SCRIPT_DUE_STREAM, g->cfg->stream);
        scriptSet(&s, SCRIPT_DUE_RETRIES, g->retry_key);
        scriptSet(&s, SCRIPT_DUE_DLQ, g->w->cfg->dead_letter_stream);
        scriptSet(&s, SCRIPT_DUE_GROUP, g->cfg->name);
        scriptSet(&s, SCRIPT_DUE_CONSUMER, g->w->consumer);
        scriptSet(&s, SCRIPT_DUE_NOW_MS, nowms);
        scriptSet(&s, SCRIPT_DUE_MIN_IDLE, idle);
        scriptSet(&s, SCRIPT_DUE_COUNT, count);
        scriptSet(&s, SCRIPT_DUE_NOW, now);
        scriptSet(&s, SCRIPT_DUE_STREAM_NAME, g->cfg->stream);
        if (scriptSend(&s, g->w->cmd, onDue, g) == 0) g->claiming = 1;
    }
    scriptFree(&s);
}

static void onReclaim(redisLink *l, redisReply *reply, void *privdata) {
    group *g = privdata;

    UNUSED(l);
    g->reclaiming = 0;
    if (!usable(g, reply, "reclaiming idle entries")) return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    snprintf(g->reclaim_cursor, sizeof(g->reclaim_cursor), "%s",
             reply->element[0]->str);
    /* a crashed worker's backlog is taken over page after page, as soon
     * as there is room (consumerKick asks), not one page per interval */
    g->reclaim_more = strcmp(g->reclaim_cursor, "0-0") != 0 ||
                      (reply->element[1]->type == REDIS_REPLY_ARRAY &&
                       (int)reply->element[1]->elements >= g->reclaim_count);
    adoptAll(g, reply->element[1], "reclaim");
    if (g->reclaim_more) reclaimIdle(g);
}

/* One XAUTOCLAIM page per call (lua/reclaim.lua), going on from the
 * cursor the last one returned ("0-0" again once the pending list was
 * walked through). */
void reclaimIdle(group *g) {
    char idle[24], count[16], now[40];
    scriptCmd s;
    int n = taskRoom(g);

    if (g->w->stopping || g->paused || !g->created || g->reclaiming ||
        n == 0)
        return;
    if (scriptInit(&s, SCRIPT_RECLAIM_LUA, SCRIPT_RECLAIM_NUMKEYS,
                   SCRIPT_RECLAIM_ARGC) == 0) {
        formatTime(now, sizeof(now), nowMs());
        snprintf(idle, sizeof(idle), "%lld", g->cfg->min_idle_ms);
        snprintf(count, sizeof(count), "%d", n);
        g->reclaim_count = n;
        scriptSet(&s, SCRIPT_RECLAIM_STREAM, g->cfg->stream);
        scriptSet(&s, SCRIPT_RECLAIM_RETRIES, g->retry_key);
        scriptSet(&s, SCRIPT_RECLAIM_DLQ, g->w->cfg->dead_letter_stream);
        scriptSet(&s, SCRIPT_RECLAIM_GROUP, g->cfg->name);
        scriptSet(&s, SCRIPT_RECLAIM_CONSUMER, g->w->consumer);
        scriptSet(&s, SCRIPT_RECLAIM_MIN_IDLE, idle);
        scriptSet(&s, SCRIPT_RECLAIM_CURSOR, g->reclaim_cursor);
        scriptSet(&s, SCRIPT_RECLAIM_COUNT, count);
        scriptSet(&s, SCRIPT_RECLAIM_NOW, now);
        scriptSet(&s, SCRIPT_RECLAIM_STREAM_NAME, g->cfg->stream);
        if (scriptSend(&s, g->w->cmd, onReclaim, g) == 0)
            g->reclaiming = 1;
    }
    scriptFree(&s);
}

/* ----------------------------------------------------------- retention */

static void onConsumers(redisLink *l, redisReply *reply, void *privdata) {
    group *g = privdata;

    UNUSED(l);
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        logMsg(LOG_INFO, "deleted %lld idle consumers without pending "
               "entries from group %s", reply->integer, g->cfg->name);
}

static void onRetention(redisLink *l, redisReply *reply, void *privdata) {
    const char *stream = privdata;

    UNUSED(l);
    if (reply == NULL) return;
    if (reply->type == REDIS_REPLY_ERROR)
        logMsg(LOG_ERROR, "retention of stream %s: %s", stream, reply->str);
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        logMsg(LOG_INFO, "trimmed %lld entries from stream %s",
               reply->integer, stream);
}

/* Trims each stream the groups read, once (lua/retention.lua); and
 * deletes the consumers of gone workers (lua/consumers.lua). */
void retentionRun(worker *w) {
    char cutoff[40], idle[24];
    scriptCmd s;
    int i, j;

    if (w->stopping) return;
    snprintf(idle, sizeof(idle), "%d", CONSUMER_FORGET_MS);
    for (i = 0; i < w->ngroups; i++) {
        group *g = &w->groups[i];

        if (!g->created) continue;
        if (scriptInit(&s, SCRIPT_CONSUMERS_LUA, SCRIPT_CONSUMERS_NUMKEYS,
                       SCRIPT_CONSUMERS_ARGC) == 0) {
            scriptSet(&s, SCRIPT_CONSUMERS_STREAM, g->cfg->stream);
            scriptSet(&s, SCRIPT_CONSUMERS_GROUP, g->cfg->name);
            scriptSet(&s, SCRIPT_CONSUMERS_CONSUMER, w->consumer);
            scriptSet(&s, SCRIPT_CONSUMERS_IDLE, idle);
            scriptSend(&s, w->cmd, onConsumers, g);
        }
        scriptFree(&s);
    }
    snprintf(cutoff, sizeof(cutoff), "%lld-0",
             nowMs() - w->cfg->retention_ms);
    for (i = 0; i < w->ngroups; i++) {
        const char *stream = w->groups[i].cfg->stream;

        for (j = 0; j < i; j++)
            if (strcmp(w->groups[j].cfg->stream, stream) == 0) break;
        if (j < i) continue;
        if (scriptInit(&s, SCRIPT_RETENTION_LUA, SCRIPT_RETENTION_NUMKEYS,
                       SCRIPT_RETENTION_ARGC) == 0) {
            scriptSet(&s, SCRIPT_RETENTION_STREAM, stream);
            scriptSet(&s, SCRIPT_RETENTION_MIN_ID, cutoff);
            scriptSend(&s, w->cmd, onRetention, (void *)stream);
        }
        scriptFree(&s);
    }
}

/* -------------------------------------------------------------- timers */

static void dueEvent(evutil_socket_t fd, short what, void *arg) {
    UNUSED(fd);
    UNUSED(what);
    reclaimDue(arg);
}

static void reclaimEvent(evutil_socket_t fd, short what, void *arg) {
    UNUSED(fd);
    UNUSED(what);
    reclaimIdle(arg);
}

/* What the touch found: an entry another consumer has, or one deleted
 * (and dead-lettered by the touch). */
static void onTouched(group *g, const char *id, int deleted) {
    if (deleted)
        taskDeleted(g, id, "touch");
    else
        taskLost(g, id);
}

static void touchEvent(evutil_socket_t fd, short what, void *arg) {
    group *g = arg;

    UNUSED(fd);
    UNUSED(what);
    taskForgetRetries(g, g->cfg->min_idle_ms);
    stateTouch(g, onTouched);
}

static void addPersist(struct event *ev, long long ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_add(ev, &tv);
}

static long long clampMs(long long v, long long lo, long long hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Creates the group's timers, not armed yet. Returns 0, or -1 when out of
 * memory (reclaimFree() releases those created). */
int reclaimInit(group *g) {
    struct event_base *base = g->w->base;

    g->due_ev = event_new(base, -1, EV_PERSIST, dueEvent, g);
    g->reclaim_ev = event_new(base, -1, EV_PERSIST, reclaimEvent, g);
    g->touch_ev = event_new(base, -1, EV_PERSIST, touchEvent, g);
    return g->due_ev && g->reclaim_ev && g->touch_ev ? 0 : -1;
}

/* Arms the timers: due retries are looked for at half the base backoff,
 * idle entries at half of min-idle (at most every 5 s), and the entries
 * held are touched at a third of min-idle. */
void reclaimStart(group *g) {
    addPersist(g->due_ev, clampMs(g->cfg->backoff_base_ms / 2, 20, 1000));
    addPersist(g->reclaim_ev, clampMs(g->cfg->min_idle_ms / 2, 50, 5000));
    addPersist(g->touch_ev, clampMs(g->cfg->min_idle_ms / 3, 20, 10000));
}

void reclaimStop(group *g) {
    if (g->due_ev) event_del(g->due_ev);
    if (g->reclaim_ev) event_del(g->reclaim_ev);
    if (g->touch_ev) event_del(g->touch_ev);
}

void reclaimFree(group *g) {
    if (g->due_ev) event_free(g->due_ev);
    if (g->reclaim_ev) event_free(g->reclaim_ev);
    if (g->touch_ev) event_free(g->touch_ev);
}
