/* Getting entries back: retries that are due (from the durable schedule),
 * entries idle longer than min-idle (a crashed or hung consumer's, taken
 * over with XAUTOCLAIM), and retention (XTRIM MINID below what any group
 * still needs); and, on the third timer, the touch of the entries held.
 *
 * An entry that was deleted from the stream while still pending cannot be
 * delivered: Redis 7 reports it (XAUTOCLAIM's third element; XCLAIM leaves
 * it out) and drops it from the pending list, so the scripts dead-letter
 * it with the reason deleted_before_delivery there and then. */

#define _POSIX_C_SOURCE 200809L

#include "reclaim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "scripts.h"
#include "state.h"
#include "task.h"
#include "util.h"

/* KEYS: stream, retry schedule, dead-letter stream. ARGV: group, consumer,
 * now ms, min-idle ms, count, now (RFC 3339), stream name.
 * Takes the due retries that are this consumer's, or whose consumer has
 * been silent for min-idle; returns {id, fields or nil, delivery count}. */
static const char dueScript[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], "
    "  'LIMIT', 0, tonumber(ARGV[5])) "
    "local out = {} "
    "for _, id in ipairs(due) do "
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) "
    "  if #p == 0 then "
    "    redis.call('ZREM', KEYS[2], id) "
    "  elseif p[1][2] == ARGV[2] or p[1][3] >= tonumber(ARGV[4]) then "
    "    redis.call('ZREM', KEYS[2], id) "
    "    local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id) "
    "    if #e == 0 then "
    LUA_DEAD_DELETED("KEYS[3]", "ARGV[1]", "ARGV[7]", "id", "p[1][4]",
                     "ARGV[6]", "ARGV[2]")
    "      out[#out + 1] = {id, false, p[1][4]} "
    "    else "
    "      out[#out + 1] = {id, e[1][2], p[1][4] + 1} "
    "    end "
    "  end "
    "end "
    "return out";

/* KEYS: stream, retry schedule, dead-letter stream. ARGV: group, consumer,
 * min-idle ms, cursor, count, now (RFC 3339), stream name.
 * Returns {next cursor, {{id, fields or nil, delivery count}, ...}}. */
static const char reclaimScript[] =
    "local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], "
    "  ARGV[4], 'COUNT', ARGV[5]) "
    "local out = {} "
    "for _, e in ipairs(r[2]) do "
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1) "
    "  redis.call('ZREM', KEYS[2], e[1]) "
    "  out[#out + 1] = {e[1], e[2], p[1] and p[1][4] or 1} "
    "end "
    "for _, id in ipairs(r[3] or {}) do "
    "  redis.call('ZREM', KEYS[2], id) "
    LUA_DEAD_DELETED("KEYS[3]", "ARGV[1]", "ARGV[7]", "id", "'unknown'",
                     "ARGV[6]", "ARGV[2]")
    "  out[#out + 1] = {id, false, 0} "
    "end "
    "return {r[1], out}";

/* KEYS: stream. ARGV: the id below which age alone allows trimming
 * ("<now - retention>-0"). Trims below the oldest entry any group of the
 * stream (ours or not) still needs: its oldest pending entry, or the one
 * after its last-delivered id. Returns the number of entries trimmed. */
static const char retentionScript[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local groups = redis.call('XINFO', 'GROUPS', KEYS[1]) "
    "if #groups == 0 then return 0 end "
    "local dash = string.find(ARGV[1], '-', 1, true) "
    "local bms = tonumber(string.sub(ARGV[1], 1, dash - 1)) "
    "local bseq = 0 "
    "local function consider(id, inc) "
    "  local d = string.find(id, '-', 1, true) "
    "  local ms = tonumber(string.sub(id, 1, d - 1)) "
    "  local seq = tonumber(string.sub(id, d + 1)) + inc "
    "  if ms < bms or (ms == bms and seq < bseq) then "
    "    bms, bseq = ms, seq "
    "  end "
    "end "
    "for _, g in ipairs(groups) do "
    "  local t = {} "
    "  for i = 1, #g, 2 do t[g[i]] = g[i + 1] end "
    "  if t['pending'] > 0 then "
    "    consider(redis.call('XPENDING', KEYS[1], t['name'])[2], 0) "
    "  else "
    "    consider(t['last-delivered-id'], 1) "
    "  end "
    "end "
    "return redis.call('XTRIM', KEYS[1], 'MINID', "
    "  string.format('%.0f-%.0f', bms, bseq))";

/* KEYS: stream. ARGV: group, this consumer, idle ms.
 * Deletes the group's consumers that have nothing pending and have been
 * silent that long: the names of workers gone (hostname:pid is new with
 * each start). One with entries pending stays until reclaim empties it.
 * Returns how many went. */
static const char consumersScript[] =
    "local n = 0 "
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], "
    "    ARGV[1])) do "
    "  local t = {} "
    "  for i = 1, #c, 2 do t[c[i]] = c[i + 1] end "
    "  if t['pending'] == 0 and t['idle'] > tonumber(ARGV[3]) and "
    "      t['name'] ~= ARGV[2] then "
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], t['name']) "
    "    n = n + 1 "
    "  end "
    "end "
    "return n";

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

static void scriptArgs(const group *g, const char *script, const char **argv,
                       char *now) {
    formatTime(now, 40, nowMs());
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = "3";
    argv[3] = g->cfg->stream;
    argv[4] = g->retry_key;
    argv[5] = g->w->cfg->dead_letter_stream;
    argv[6] = g->cfg->name;
    argv[7] = g->w->consumer;
}

/* Claims the group's retries that are due: as many as there is room for,
 * plus those this worker holds (the due script must hand them back however
 * full the buffer is, or a subject waiting behind one would wait for
 * good). */
void reclaimDue(group *g) {
    char nowms[24], idle[24], count[16], now[40];
    const char *argv[13];
    int n = taskRoom(g);

    if (n > g->cfg->concurrency) n = g->cfg->concurrency;
    n += taskHeldDue(g);
    if (g->w->stopping || g->paused || !g->created || g->claiming || n == 0)
        return;
    scriptArgs(g, dueScript, argv, now);
    snprintf(nowms, sizeof(nowms), "%lld", nowMs());
    snprintf(idle, sizeof(idle), "%lld", g->cfg->min_idle_ms);
    snprintf(count, sizeof(count), "%d", n);
    argv[8] = nowms;
    argv[9] = idle;
    argv[10] = count;
    argv[11] = now;
    argv[12] = g->cfg->stream;
    if (linkCommandStrings(g->w->cmd, onDue, g, 13, argv) == 0)
        g->claiming = 1;
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

/* One XAUTOCLAIM page per call, going on from the cursor the last one
 * returned ("0-0" again once the pending list was walked through). */
void reclaimIdle(group *g) {
    char idle[24], count[16], now[40];
    const char *argv[13];
    int n = taskRoom(g);

    if (g->w->stopping || g->paused || !g->created || g->reclaiming ||
        n == 0)
        return;
    scriptArgs(g, reclaimScript, argv, now);
    snprintf(idle, sizeof(idle), "%lld", g->cfg->min_idle_ms);
    snprintf(count, sizeof(count), "%d", n);
    argv[8] = idle;
    argv[9] = g->reclaim_cursor;
    argv[10] = count;
    g->reclaim_count = n;
    argv[11] = now;
    argv[12] = g->cfg->stream;
    if (linkCommandStrings(g->w->cmd, onReclaim, g, 13, argv) == 0)
        g->reclaiming = 1;
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

/* Trims each stream the groups read, once; and deletes the consumers of
 * gone workers. */
void retentionRun(worker *w) {
    char cutoff[40], idle[24];
    int i, j;

    if (w->stopping) return;
    snprintf(idle, sizeof(idle), "%d", CONSUMER_FORGET_MS);
    for (i = 0; i < w->ngroups; i++) {
        group *g = &w->groups[i];
        const char *argv[7] = {"EVAL", consumersScript, "1", g->cfg->stream,
                               g->cfg->name, w->consumer, idle};

        if (g->created) linkCommandStrings(w->cmd, onConsumers, g, 7, argv);
    }
    snprintf(cutoff, sizeof(cutoff), "%lld-0",
             nowMs() - w->cfg->retention_ms);
    for (i = 0; i < w->ngroups; i++) {
        const char *stream = w->groups[i].cfg->stream;
        const char *argv[5] = {"EVAL", retentionScript, "1", stream, cutoff};

        for (j = 0; j < i; j++)
            if (strcmp(w->groups[j].cfg->stream, stream) == 0) break;
        if (j < i) continue;
        linkCommandStrings(w->cmd, onRetention, (void *)stream, 5, argv);
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
