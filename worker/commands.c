/* The admin port's commands (admin.c speaks the protocol and does AUTH):
 * what an operator asks the running worker with redis-cli. */

#define _POSIX_C_SOURCE 200809L

#include "commands.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "consumer.h"
#include "deadletter.h"
#include "deliver.h"
#include "log.h"
#include "reclaim.h"
#include "util.h"
#include "worker.h"

#define INFO_MAX (64 * 1024)

/* Parses a count argument in [1, max]; replies the error itself. */
static int countArg(adminClient *c, const char *s, long long max,
                    long long *v) {
    char *end;

    errno = 0;
    *v = strtoll(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || *v < 1 || *v > max) {
        adminReplyError(c, "ERR value is not an integer or out of range");
        adminCommandDone(c);
        return -1;
    }
    return 0;
}

static group *groupArg(adminClient *c, worker *w, const char *name) {
    group *g = workerGroup(w, name);

    if (g == NULL) {
        char shown[72];
        size_t i;

        /* never echo control bytes back to a terminal */
        for (i = 0; name[i] && i < 64; i++)
            shown[i] = name[i] > ' ' && name[i] < 127 ? name[i] : '?';
        shown[i] = '\0';
        adminReplyError(c, "ERR no such group '%s'", shown);
        adminCommandDone(c);
    }
    return g;
}

/* A reply that only needs Redis's answer passed on. */
static void onPassThrough(redisLink *l, redisReply *reply, void *privdata) {
    adminClient *c = privdata;

    UNUSED(l);
    if (reply == NULL)
        adminReplyError(c, "ERR redis link down");
    else if (reply->type == REDIS_REPLY_ERROR)
        adminReplyError(c, "ERR redis: %s", reply->str);
    else
        adminReplyRedis(c, reply);
    adminCommandDone(c);
}

static void replyLinkDown(adminClient *c) {
    adminReplyError(c, "ERR redis link down");
    adminCommandDone(c);
}

/* --------------------------------------------------------------- PING */

static void pingCommand(adminClient *c, int argc, char **argv,
                        size_t *argvlen, void *privdata) {
    UNUSED(privdata);
    if (argc == 2) {
        adminReplyBulk(c, argv[1], argvlen[1]);
    } else {
        adminReplyStatus(c, "PONG");
    }
    adminCommandDone(c);
}

/* --------------------------------------------------------------- INFO */

typedef struct infoCall {
    adminClient *c;
    worker *w;
    int waiting;            /* XINFO GROUPS replies still to come */
    int all;
    char section[16];
} infoCall;

static int wants(const infoCall *ic, const char *section) {
    return ic->all || strcasecmp(ic->section, section) == 0;
}

/* Appends to the INFO text; what does not fit is cut (INFO_MAX is far
 * more than any config's groups need). */
static void infoAdd(char *buf, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void infoAdd(char *buf, size_t *len, const char *fmt, ...) {
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf + *len, INFO_MAX - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len += (size_t)n < INFO_MAX - *len ? (size_t)n
                                                   : INFO_MAX - *len - 1;
}

static void infoReply(infoCall *ic) {
    worker *w = ic->w;
    char *buf = malloc(INFO_MAX);
    size_t len = 0;
    int i;

    if (buf == NULL) {
        adminReplyError(ic->c, "ERR out of memory");
        adminCommandDone(ic->c);
        free(ic);
        return;
    }
    if (wants(ic, "server")) {
        infoAdd(buf, &len, "# Server\r\n");
        infoAdd(buf, &len, "version:%s\r\n", WORKER_VERSION);
        infoAdd(buf, &len, "process_id:%ld\r\n", (long)getpid());
        infoAdd(buf, &len, "consumer:%s\r\n", w->consumer);
        infoAdd(buf, &len, "config_file:%s\r\n", w->config_file);
        infoAdd(buf, &len, "uptime_in_seconds:%lld\r\n",
            (monotonicMs() - w->started_ms) / 1000);
        infoAdd(buf, &len, "admin_clients:%d\r\n", adminClientCount(w->admin));
        infoAdd(buf, &len, "stopping:%d\r\n", w->stopping);
        infoAdd(buf, &len, "\r\n");
    }
    if (wants(ic, "redis")) {
        const configAddr *a = &w->cfg->redis;

        infoAdd(buf, &len, "# Redis\r\n");
        infoAdd(buf, &len, "redis_link:%s\r\n", w->cmd->ready ? "up" : "down");
        if (a->path)
            infoAdd(buf, &len, "redis_address:unix:%s\r\n", a->path);
        else
            infoAdd(buf, &len, "redis_address:%s:%d\r\n", a->host, a->port);
        infoAdd(buf, &len, "redis_reconnects:%lld\r\n", w->cmd->reconnects);
        infoAdd(buf, &len, "deliveries_in_flight:%d\r\n",
                deliverInFlight(w->deliverer));
        infoAdd(buf, &len, "\r\n");
    }
    if (wants(ic, "groups")) {
        infoAdd(buf, &len, "# Groups\r\n");
        for (i = 0; i < w->ngroups; i++) {
            const group *g = &w->groups[i];
            const task *t;
            int waiting = 0, retrying = 0;

            for (t = g->tasks; t; t = t->next) {
                if (t->state == TASK_WAITING) waiting++;
                if (t->state == TASK_RETRYING) retrying++;
            }
            infoAdd(buf, &len,
                "group_%s:stream=%s,state=%s,processed=%lld,succeeded=%lld,"
                "failed=%lld,retried=%lld,dead_lettered=%lld,skipped=%lld,"
                "duplicates=%lld,in_flight=%d,waiting=%d,retrying=%d,"
                "pending=%lld,lag=%lld\r\n",
                g->cfg->name, g->cfg->stream,
                w->stopping ? "stopping" : g->paused ? "paused"
                : !g->created ? "starting" : "running",
                g->stats.processed, g->stats.succeeded, g->stats.failed,
                g->stats.retried, g->stats.dead_lettered, g->stats.skipped,
                g->stats.duplicates, g->in_flight, waiting, retrying,
                g->pending, g->lag);
        }
    }
    /* no blank line after the last section */
    if (len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0) len -= 2;
    adminReplyBulk(ic->c, buf, len);
    adminCommandDone(ic->c);
    free(buf);
    free(ic);
}

/* One XINFO GROUPS call of an INFO. */
typedef struct infoStream {
    infoCall *ic;
    const char *stream;
} infoStream;

/* XINFO GROUPS of one stream: the pending count and lag of our groups on
 * it (lag is nil while Redis cannot tell, e.g. after a trim: -1). */
static void onInfoGroups(redisLink *l, redisReply *reply, void *privdata) {
    infoStream *is = privdata;
    infoCall *ic = is->ic;
    size_t i, j;
    int k;

    UNUSED(l);
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < reply->elements; i++) {
            redisReply *g = reply->element[i];
            const char *name = NULL;
            long long pending = -1, lag = -1;

            if (g->type != REDIS_REPLY_ARRAY) continue;
            for (j = 0; j + 1 < g->elements; j += 2) {
                const char *key = g->element[j]->str;
                redisReply *v = g->element[j + 1];

                if (key == NULL) continue;
                if (strcmp(key, "name") == 0) name = v->str;
                if (strcmp(key, "pending") == 0) pending = v->integer;
                if (strcmp(key, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
                    lag = v->integer;
            }
            for (k = 0; name && k < ic->w->ngroups; k++) {
                group *gr = &ic->w->groups[k];

                if (strcmp(gr->cfg->name, name) == 0 &&
                    strcmp(gr->cfg->stream, is->stream) == 0) {
                    gr->pending = pending;
                    gr->lag = lag;
                }
            }
        }
    }
    free(is);
    if (--ic->waiting == 0) infoReply(ic);
}

static void infoCommand(adminClient *c, int argc, char **argv,
                        size_t *argvlen, void *privdata) {
    worker *w = privdata;
    infoCall *ic = calloc(1, sizeof(*ic));
    int i, j;

    UNUSED(argvlen);
    if (ic == NULL) {
        adminReplyError(c, "ERR out of memory");
        adminCommandDone(c);
        return;
    }
    ic->c = c;
    ic->w = w;
    ic->all = argc == 1 || strcasecmp(argv[1], "all") == 0 ||
              strcasecmp(argv[1], "everything") == 0 ||
              strcasecmp(argv[1], "default") == 0;
    if (argc > 2) {
        free(ic);
        adminReplyError(c, "ERR syntax error");
        adminCommandDone(c);
        return;
    }
    if (!ic->all) snprintf(ic->section, sizeof(ic->section), "%s", argv[1]);
    for (i = 0; i < w->ngroups; i++) {
        w->groups[i].pending = -1;
        w->groups[i].lag = -1;
    }
    ic->waiting = 1;        /* held until every XINFO is sent */
    if (wants(ic, "groups")) {
        for (i = 0; i < w->ngroups; i++) {
            const char *stream = w->groups[i].cfg->stream;
            const char *cmd[3] = {"XINFO", "GROUPS", stream};
            infoStream *is;

            for (j = 0; j < i; j++)
                if (strcmp(w->groups[j].cfg->stream, stream) == 0) break;
            if (j < i || (is = malloc(sizeof(*is))) == NULL) continue;
            is->ic = ic;
            is->stream = stream;
            if (linkCommandStrings(w->cmd, onInfoGroups, is, 3, cmd) == 0)
                ic->waiting++;
            else
                free(is);
        }
    }
    if (--ic->waiting == 0) infoReply(ic);
}

/* ------------------------------------------------------ PENDING / DLQ */

static void pendingCommand(adminClient *c, int argc, char **argv,
                           size_t *argvlen, void *privdata) {
    worker *w = privdata;
    long long count = 100;
    char n[24];
    group *g;

    UNUSED(argvlen);
    if ((g = groupArg(c, w, argv[1])) == NULL) return;
    if (argc == 3 && countArg(c, argv[2], 10000, &count) != 0) return;
    snprintf(n, sizeof(n), "%lld", count);
    {
        const char *cmd[6] = {"XPENDING", g->cfg->stream, g->cfg->name,
                              "-", "+", n};

        if (linkCommandStrings(w->cmd, onPassThrough, c, 6, cmd) != 0)
            replyLinkDown(c);
    }
}

static void dlqCommand(adminClient *c, int argc, char **argv,
                       size_t *argvlen, void *privdata) {
    worker *w = privdata;
    long long count = 10;
    char n[24];

    UNUSED(argvlen);
    if (argc == 2 && countArg(c, argv[1], 1000, &count) != 0) return;
    snprintf(n, sizeof(n), "%lld", count);
    {
        const char *cmd[6] = {"XREVRANGE", w->cfg->dead_letter_stream, "+",
                              "-", "COUNT", n};

        if (linkCommandStrings(w->cmd, onPassThrough, c, 6, cmd) != 0)
            replyLinkDown(c);
    }
}

/* -------------------------------------------------------------- REPLAY */

static void onReplayed(long long replayed, const char *error,
                       void *privdata) {
    adminClient *c = privdata;

    if (error)
        adminReplyError(c, "ERR %s", error);
    else
        adminReplyInteger(c, replayed);
    adminCommandDone(c);
}

static void replayCommand(adminClient *c, int argc, char **argv,
                          size_t *argvlen, void *privdata) {
    worker *w = privdata;
    const char *id = strcasecmp(argv[1], "all") == 0 ? NULL : argv[1];

    UNUSED(argc);
    if (id && (argvlen[1] == 0 || argvlen[1] > 40 ||
               strspn(id, "0123456789-") != argvlen[1])) {
        adminReplyError(c, "ERR invalid dead letter id (expected an entry "
                        "id such as 1764190000000-0, or ALL)");
        adminCommandDone(c);
        return;
    }
    if (deadletterReplay(w, id, onReplayed, c) != 0) replyLinkDown(c);
}

/* -------------------------------------------------------- PAUSE/RESUME */

static void pauseCommand(adminClient *c, int argc, char **argv,
                         size_t *argvlen, void *privdata) {
    worker *w = privdata;
    int pause = strcasecmp(argv[0], "pause") == 0;
    group *g;

    UNUSED(argc);
    UNUSED(argvlen);
    if ((g = groupArg(c, w, argv[1])) == NULL) return;
    if (g->paused != pause)
        logMsg(LOG_INFO, "group %s %s by the admin port", g->cfg->name,
               pause ? "paused" : "resumed");
    g->paused = pause;
    adminReplyStatus(c, "OK");
    adminCommandDone(c);
    if (!pause) {
        consumerKick(g);
        reclaimDue(g);
    }
}

/* ------------------------------------------------------------ SHUTDOWN */

static void shutdownCommand(adminClient *c, int argc, char **argv,
                            size_t *argvlen, void *privdata) {
    UNUSED(argc);
    UNUSED(argv);
    UNUSED(argvlen);
    adminReplyStatus(c, "OK");
    adminCloseAfterReply(c);
    adminCommandDone(c);
    workerStop(privdata, "SHUTDOWN on the admin port");
}

/* In HELP's order. */
const adminCommand workerCommands[] = {
    {"ping", 1, 2, "PING [message]", pingCommand},
    {"auth", 2, 3, "AUTH password", adminAuthCommand},
    {"info", 1, -1, "INFO [server|redis|groups]", infoCommand},
    {"pending", 2, 3, "PENDING group [count]  -- pending entries: id, "
     "consumer, idle ms, deliveries", pendingCommand},
    {"dlq", 1, 2, "DLQ [count]  -- the newest dead letters", dlqCommand},
    {"replay", 2, 2, "REPLAY id|ALL  -- dead letters back to their stream",
     replayCommand},
    {"pause", 2, 2, "PAUSE group", pauseCommand},
    {"resume", 2, 2, "RESUME group", pauseCommand},
    {"shutdown", 1, 2, "SHUTDOWN  -- graceful stop", shutdownCommand},
    {"help", 1, 1, "HELP", adminHelpCommand},
    {NULL, 0, 0, NULL, NULL}
};
