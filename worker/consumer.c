/* The consumer of one group: XGROUP CREATE, XREADGROUP on the group's own
 * link, and the kick that starts what may start and reads what there is
 * room for. */

#include "consumer.h"

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "checkout_contract.h"
#include "log.h"
#include "reclaim.h"
#include "task.h"
#include "util.h"

#define CONSUMER_BLOCK_MS 2000      /* one XREADGROUP waits this long */
#define CONSUMER_MAX_RETRYING 4096  /* entries waiting for a retry, held */

static void consumerStart(group *g);

/* ------------------------------------------------------------- reading */

static void consumerKickEvent(evutil_socket_t fd, short what, void *arg) {
    UNUSED(fd);
    UNUSED(what);
    consumerKick(arg);
}

/* Reads again after 'ms' (after an error, so it does not spin). */
static void consumerKickLater(group *g, long long ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_base_once(g->w->base, -1, EV_TIMEOUT, consumerKickEvent, g, &tv);
}

static void consumerOnRead(redisLink *l, redisReply *reply, void *privdata) {
    group *g = privdata;
    size_t i, j;

    UNUSED(l);
    g->reading = 0;
    if (reply == NULL) return;      /* link down: it kicks when back */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            /* Redis came back without our group (restarted empty) */
            logMsg(LOG_WARN, "group %s is gone from stream %s, creating "
                   "it again", g->cfg->name, g->cfg->stream);
            g->created = 0;
            consumerStart(g);
        } else {
            logMsg(LOG_ERROR, "XREADGROUP of group %s: %s", g->cfg->name,
                   reply->str);
            consumerKickLater(g, 1000);
        }
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < reply->elements; i++) {
            redisReply *s = reply->element[i];

            if (s->type != REDIS_REPLY_ARRAY || s->elements != 2) continue;
            for (j = 0; j < s->element[1]->elements; j++)
                taskAdopt(g, s->element[1]->element[j], 1);
        }
    }
    consumerKick(g);
}

static void consumerRead(group *g) {
    char count[24], block[24];
    const char *argv[11] = {"XREADGROUP", "GROUP", g->cfg->name,
                            g->w->consumer, "COUNT", count, "BLOCK", block,
                            "STREAMS", g->cfg->stream, ">"};
    int room;

    room = taskRoom(g);
    if (room > g->cfg->concurrency) room = g->cfg->concurrency;
    if (room <= 0 || g->ntasks >= CONSUMER_MAX_RETRYING) return;
    snprintf(count, sizeof(count), "%d", room);
    snprintf(block, sizeof(block), "%d", CONSUMER_BLOCK_MS);
    if (linkCommandStrings(g->reader, consumerOnRead, g, 11, argv) == 0)
        g->reading = 1;
}

/* Reads more if the group may: running, its group created, both its link
 * and the commands link up (what it reads needs the scripts), room in its
 * buffer and no read already out. */
void consumerKick(group *g) {
    taskDispatch(g);
    if (g->reclaim_more) reclaimIdle(g);
    if (g->w->stopping || g->paused || !g->created || g->reading ||
        !g->reader->ready || !g->w->cmd->ready)
        return;
    consumerRead(g);
}

/* ------------------------------------------------------ the group itself */

static void consumerStartEvent(evutil_socket_t fd, short what, void *arg) {
    UNUSED(fd);
    UNUSED(what);
    consumerStart(arg);
}

static void consumerOnCreate(redisLink *l, redisReply *reply,
                             void *privdata) {
    group *g = privdata;
    struct timeval tv = {1, 0};

    UNUSED(l);
    g->creating = 0;
    if (reply == NULL) return;      /* the link comes back and retries */
    if (reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        /* out of memory, a read-only replica after a failover: again in a
         * second, until Redis takes it */
        logMsg(LOG_ERROR, "cannot create group %s on stream %s: %s",
               g->cfg->name, g->cfg->stream, reply->str);
        event_base_once(g->w->base, -1, EV_TIMEOUT, consumerStartEvent, g,
                        &tv);
        return;
    }
    if (reply->type != REDIS_REPLY_ERROR)
        logMsg(LOG_INFO, "created group %s on stream %s", g->cfg->name,
               g->cfg->stream);
    g->created = 1;
    consumerKick(g);
}

/* Creates the group if it is missing: from the stream's first entry, so
 * events appended before the worker's first start are handled too. */
static void consumerStart(group *g) {
    const char *argv[6] = {"XGROUP", "CREATE", g->cfg->stream, g->cfg->name,
                           "0", "MKSTREAM"};

    if (g->created || g->creating) return;
    if (linkCommandStrings(g->w->cmd, consumerOnCreate, g, 6, argv) == 0)
        g->creating = 1;
}

/* The commands link is up, first or again: Redis may have come back
 * without the groups (restarted empty), so each is created if missing. */
void consumerLinkUp(worker *w) {
    int i;

    for (i = 0; i < w->ngroups; i++) {
        w->groups[i].created = 0;
        consumerStart(&w->groups[i]);
    }
}

static void readerState(redisLink *l, int up, void *privdata) {
    UNUSED(l);
    if (up) consumerKick(privdata);
}

/* Sets up the group of 'cfg': its link and timers, not started yet. Its
 * tasks tell 'settled' when they settle. Returns 0, or -1 when out of
 * memory (consumerFree() releases what was set up). */
int consumerInit(worker *w, group *g, groupConfig *cfg,
                 groupSettledProc *settled) {
    memset(g, 0, sizeof(*g));
    g->w = w;
    g->cfg = cfg;
    g->settled = settled;
    g->pending = -1;
    g->lag = -1;
    strcpy(g->reclaim_cursor, "0-0");
    snprintf(g->reader_name, sizeof(g->reader_name), "reader %s", cfg->name);
    snprintf(g->retry_key, sizeof(g->retry_key),
             CHECKOUT_RETRY_KEY_PREFIX "%s", cfg->name);
    g->reader = linkCreate(w->base, w->cfg, g->reader_name,
                           CONSUMER_BLOCK_MS + 5000, readerState, g);
    if (reclaimInit(g) != 0 || g->reader == NULL) return -1;
    return 0;
}

/* Starts the group's link and its reclaim timers. */
void consumerRun(group *g) {
    linkStart(g->reader);
    reclaimStart(g);
}

/* Stops reading: the link goes (an XREADGROUP out is dropped; what Redis
 * may have handed to it stays pending for reclaim). */
void consumerStopReading(group *g) {
    if (g->reader) linkStop(g->reader);
    reclaimStop(g);
}

/* Releases what the group holds: its link, its timers and its tasks. */
void consumerFree(group *g) {
    linkFree(g->reader);
    reclaimFree(g);
    taskFreeAll(g);
}
