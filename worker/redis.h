/* A Redis connection that looks after itself: hiredis's async API on the
 * worker's libevent loop, AUTH and SELECT on connect, reconnection with
 * backoff, and a watchdog that drops a connection whose replies stop coming
 * (hiredis 0.14 has no command timeouts).
 *
 * Ownership: the caller owns a redisLink (linkCreate/linkFree); the hiredis
 * context inside it comes and goes with the connection. */

#ifndef CHECKOUT_WORKER_REDIS_H
#define CHECKOUT_WORKER_REDIS_H

#include <stddef.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "config.h"

struct event_base;
struct event;

typedef struct redisLink redisLink;

/* Called when the link is ready for commands (after AUTH, SELECT, PING) and
 * when it went down; 'up' says which. */
typedef void linkStateProc(redisLink *l, int up, void *privdata);

/* A command's reply; NULL when the link went down before it came. The reply
 * is freed after the callback returns. */
typedef void linkReplyProc(redisLink *l, redisReply *reply, void *privdata);

struct redisLink {
    struct event_base *base;
    const workerConfig *cfg;
    const char *name;           /* in log lines: "commands", "reader receipt" */
    redisAsyncContext *ac;      /* NULL while down */
    int ready;                  /* AUTH/SELECT/PING answered */
    int stopped;                /* linkStop(): no reconnect */
    long long backoff_ms;       /* the next reconnect delay */
    long long allowance_ms;     /* how long a reply may take */
    long long reconnects;       /* times the link came back after a loss */
    int ever_up;
    int outstanding;            /* commands sent, replies not yet in */
    long long progress_ms;      /* last reply, or first send after idle */
    struct event *reconnect_ev;
    struct event *watchdog_ev;
    linkStateProc *state_proc;
    void *privdata;
};

/* 'allowance_ms' is how long the slowest command sent on this link may
 * take (a blocking read's BLOCK time plus the usual round trip). */
redisLink *linkCreate(struct event_base *base, const workerConfig *cfg,
                      const char *name, long long allowance_ms,
                      linkStateProc *state_proc, void *privdata);
void linkStart(redisLink *l);
/* Closes the connection for good; pending commands get NULL replies. */
void linkStop(redisLink *l);
void linkFree(redisLink *l);

/* Sends a command. Returns 0, or -1 when the link is not ready (then 'fn'
 * is never called). */
int linkCommand(redisLink *l, linkReplyProc *fn, void *privdata, int argc,
                const char **argv, const size_t *argvlen);
/* The same, with NUL-terminated arguments. */
int linkCommandStrings(redisLink *l, linkReplyProc *fn, void *privdata,
                       int argc, const char **argv);

#endif
