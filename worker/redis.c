/* Redis connections of the worker: connect, AUTH/SELECT, reconnect with
 * backoff, and a watchdog for replies that stop coming.
 *
 * hiredis 0.14 frees a context itself after a failed connect or a lost
 * connection, calling every pending callback with a NULL reply first; the
 * link forgets the context before that can happen (linkDrop) or in the
 * connect/disconnect callbacks, so it never touches a freed one. */

#define _POSIX_C_SOURCE 200809L

#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "util.h"

#define LINK_BACKOFF_MIN_MS 100
#define LINK_BACKOFF_MAX_MS 5000
#define LINK_WATCHDOG_MS 250

/* One command in flight: the caller's callback, and the link to count it
 * against. */
typedef struct linkCall {
    redisLink *link;
    linkReplyProc *fn;
    void *privdata;
} linkCall;

static void linkConnect(redisLink *l);
static void linkDrop(redisLink *l, const char *why);

static void linkReconnectEvent(evutil_socket_t fd, short what, void *arg) {
    redisLink *l = arg;

    UNUSED(fd);
    UNUSED(what);
    if (l->ac == NULL && !l->stopped) linkConnect(l);
}

/* The link is down (its context gone or going): tell the owner once, and
 * come back after the backoff. */
static void linkDown(redisLink *l) {
    struct timeval tv;
    int was_ready = l->ready;

    l->ready = 0;
    l->outstanding = 0;
    if (!l->stopped) {
        tv.tv_sec = l->backoff_ms / 1000;
        tv.tv_usec = (l->backoff_ms % 1000) * 1000;
        event_add(l->reconnect_ev, &tv);
        l->backoff_ms *= 2;
        if (l->backoff_ms > LINK_BACKOFF_MAX_MS)
            l->backoff_ms = LINK_BACKOFF_MAX_MS;
    }
    if (was_ready && l->state_proc) l->state_proc(l, 0, l->privdata);
}

static void linkOnConnect(const redisAsyncContext *ac, int status) {
    redisLink *l = ac->data;

    if (status == REDIS_OK || l->ac != ac) return;
    logStart(LOG_WARN);
    logStr("msg", "redis connect failed");
    logStr("link", l->name);
    logStr("error", ac->errstr);
    logEnd();
    l->ac = NULL;       /* hiredis frees it after this callback */
    linkDown(l);
}

static void linkOnDisconnect(const redisAsyncContext *ac, int status) {
    redisLink *l = ac->data;

    UNUSED(status);
    if (l->ac != ac) return;
    logStart(LOG_WARN);
    logStr("msg", "redis link down");
    logStr("link", l->name);
    logStr("error", ac->errstr[0] ? ac->errstr : "closed by the server");
    logEnd();
    l->ac = NULL;
    linkDown(l);
}

/* The last reply of the handshake (AUTH, SELECT, CLIENT SETNAME and PING
 * are pipelined; an error in any of them drops the link). */
static void linkOnHandshake(redisLink *l, redisReply *reply, void *privdata) {
    UNUSED(privdata);
    if (reply == NULL) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[256];

        snprintf(why, sizeof(why), "handshake: %s", reply->str);
        linkDrop(l, why);
        return;
    }
    if (reply->type != REDIS_REPLY_STATUS || strcmp(reply->str, "PONG") != 0)
        return;         /* +OK of AUTH or SELECT */
    l->ready = 1;
    l->backoff_ms = LINK_BACKOFF_MIN_MS;
    if (l->ever_up) l->reconnects++;
    l->ever_up = 1;
    logStart(LOG_INFO);
    logStr("msg", "redis link up");
    logStr("link", l->name);
    logEnd();
    if (l->state_proc) l->state_proc(l, 1, l->privdata);
}

static void linkOnReply(redisAsyncContext *ac, void *r, void *privdata) {
    linkCall *call = privdata;
    redisLink *l = call->link;

    UNUSED(ac);
    if (r != NULL && l->outstanding > 0) {
        l->outstanding--;
        l->progress_ms = monotonicMs();
    }
    call->fn(l, r, call->privdata);
    free(call);
}

static int linkSend(redisLink *l, linkReplyProc *fn, void *privdata,
                    int argc, const char **argv, const size_t *argvlen) {
    linkCall *call;

    if (l->ac == NULL ||
        (l->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
        return -1;
    if ((call = malloc(sizeof(*call))) == NULL) return -1;
    call->link = l;
    call->fn = fn;
    call->privdata = privdata;
    if (redisAsyncCommandArgv(l->ac, linkOnReply, call, argc, argv,
                              argvlen) != REDIS_OK) {
        free(call);
        return -1;
    }
    if (l->outstanding++ == 0) l->progress_ms = monotonicMs();
    return 0;
}

static void linkConnect(redisLink *l) {
    const workerConfig *cfg = l->cfg;
    redisAsyncContext *ac;
    char db[16];

    if (cfg->redis.path)
        ac = redisAsyncConnectUnix(cfg->redis.path);
    else
        ac = redisAsyncConnect(cfg->redis.host, cfg->redis.port);
    if (ac == NULL || ac->err) {
        logStart(LOG_WARN);
        logStr("msg", "redis connect failed");
        logStr("link", l->name);
        logStr("error", ac ? ac->errstr : "out of memory");
        logEnd();
        if (ac) redisAsyncFree(ac);
        linkDown(l);
        return;
    }
    ac->data = l;
    if (redisLibeventAttach(ac, l->base) != REDIS_OK) {
        redisAsyncFree(ac);
        linkDown(l);
        return;
    }
    redisAsyncSetConnectCallback(ac, linkOnConnect);
    redisAsyncSetDisconnectCallback(ac, linkOnDisconnect);
    l->ac = ac;
    l->outstanding = 0;

    /* Queued until the connection is up; PING's PONG says all went well. */
    if (cfg->redis_password) {
        const char *argv[2] = {"AUTH", cfg->redis_password};

        linkSend(l, linkOnHandshake, NULL, 2, argv, NULL);
    }
    if (cfg->redis_db) {
        const char *argv[2] = {"SELECT", db};

        snprintf(db, sizeof(db), "%d", cfg->redis_db);
        linkSend(l, linkOnHandshake, NULL, 2, argv, NULL);
    }
    {
        /* CLIENT LIST shows whose connection it is ("checkout-worker:
         * reader:receipt"): the name has no spaces, group names none */
        char name[200];
        const char *argv[3] = {"CLIENT", "SETNAME", name};
        size_t i;

        snprintf(name, sizeof(name), "checkout-worker:%s", l->name);
        for (i = 0; name[i]; i++)
            if (name[i] == ' ') name[i] = ':';
        linkSend(l, linkOnHandshake, NULL, 3, argv, NULL);
    }
    {
        const char *argv[1] = {"PING"};

        linkSend(l, linkOnHandshake, NULL, 1, argv, NULL);
    }
}

/* Frees the context: its pending callbacks get NULL replies and find the
 * link already down, so what they send fails at once. */
static void linkDrop(redisLink *l, const char *why) {
    redisAsyncContext *ac = l->ac;

    if (ac == NULL) return;
    if (why) {
        logStart(LOG_WARN);
        logStr("msg", "redis link dropped");
        logStr("link", l->name);
        logStr("error", why);
        logEnd();
    }
    l->ac = NULL;
    redisAsyncFree(ac);
    linkDown(l);
}

static void linkWatchdogEvent(evutil_socket_t fd, short what, void *arg) {
    redisLink *l = arg;
    char why[96];

    UNUSED(fd);
    UNUSED(what);
    if (l->ac && l->outstanding > 0 &&
        monotonicMs() - l->progress_ms > l->allowance_ms) {
        snprintf(why, sizeof(why), "no reply within %lld ms",
                 l->allowance_ms);
        linkDrop(l, why);
    }
}

redisLink *linkCreate(struct event_base *base, const workerConfig *cfg,
                      const char *name, long long allowance_ms,
                      linkStateProc *state_proc, void *privdata) {
    redisLink *l = calloc(1, sizeof(*l));

    if (l == NULL) return NULL;
    l->base = base;
    l->cfg = cfg;
    l->name = name;
    l->allowance_ms = allowance_ms;
    l->backoff_ms = LINK_BACKOFF_MIN_MS;
    l->state_proc = state_proc;
    l->privdata = privdata;
    l->reconnect_ev = evtimer_new(base, linkReconnectEvent, l);
    l->watchdog_ev = event_new(base, -1, EV_PERSIST, linkWatchdogEvent, l);
    if (l->reconnect_ev == NULL || l->watchdog_ev == NULL) {
        linkFree(l);
        return NULL;
    }
    return l;
}

void linkStart(redisLink *l) {
    struct timeval tv = {0, LINK_WATCHDOG_MS * 1000};

    event_add(l->watchdog_ev, &tv);
    linkConnect(l);
}

void linkStop(redisLink *l) {
    l->stopped = 1;
    if (l->reconnect_ev) event_del(l->reconnect_ev);
    if (l->watchdog_ev) event_del(l->watchdog_ev);
    linkDrop(l, NULL);
}

void linkFree(redisLink *l) {
    if (l == NULL) return;
    linkStop(l);
    if (l->reconnect_ev) event_free(l->reconnect_ev);
    if (l->watchdog_ev) event_free(l->watchdog_ev);
    free(l);
}

int linkCommand(redisLink *l, linkReplyProc *fn, void *privdata, int argc,
                const char **argv, const size_t *argvlen) {
    if (!l->ready) return -1;
    if (linkSend(l, fn, privdata, argc, argv, argvlen) == 0) return 0;
    /* hiredis is failing the context's callbacks before it calls the
     * disconnect callback: not ready from now on, so that what those
     * callbacks send is not tried again and again meanwhile */
    if (l->ac == NULL ||
        (l->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
        l->ready = 0;
    return -1;
}

int linkCommandStrings(redisLink *l, linkReplyProc *fn, void *privdata,
                       int argc, const char **argv) {
    return linkCommand(l, fn, privdata, argc, argv, NULL);
}
