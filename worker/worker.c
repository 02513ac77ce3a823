/* The running worker: set-up and teardown, signals, the retention timer,
 * the event loop, and the graceful stop.
 *
 * Stopping (SIGTERM, SIGINT, SHUTDOWN): no new reads, retries or reclaims;
 * deliveries in flight get until shutdown-timeout to finish and record
 * their outcome; whatever is left stays pending in Redis for the next
 * worker to reclaim. */

#define _XOPEN_SOURCE 700   /* gethostname() */

#include "worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "consumer.h"
#include "deliver.h"
#include "log.h"
#include "reclaim.h"
#include "util.h"

#define RETENTION_INTERVAL_MS 5000

/* Returns the group named 'name', or NULL. */
group *workerGroup(worker *w, const char *name) {
    int i;

    for (i = 0; i < w->ngroups; i++)
        if (strcmp(w->groups[i].cfg->name, name) == 0) return &w->groups[i];
    return NULL;
}

/* ------------------------------------------------------------ stopping */

/* Once stopping and nothing is in flight any more, the loop ends. */
static void workerCheckStopped(worker *w) {
    int i;

    if (!w->stopping) return;
    for (i = 0; i < w->ngroups; i++)
        if (w->groups[i].in_flight > 0) return;
    event_base_loopbreak(w->base);
}

/* A task of 'g' settled out of flight: the group may take on more, and a
 * stopping worker may be done. */
static void groupSettled(group *g) {
    consumerKick(g);
    workerCheckStopped(g->w);
}

static void stopTimeoutEvent(evutil_socket_t fd, short what, void *arg) {
    worker *w = arg;
    int i, left = 0;

    UNUSED(fd);
    UNUSED(what);
    for (i = 0; i < w->ngroups; i++) left += w->groups[i].in_flight;
    logStart(LOG_WARN);
    logStr("msg", "shutdown-timeout reached, leaving the rest pending");
    logInt("in_flight", left);
    logEnd();
    event_base_loopbreak(w->base);
}

/* Stops taking on work (see the top of the file); the loop ends once
 * nothing is in flight, or after shutdown-timeout. 'why' is logged. */
void workerStop(worker *w, const char *why) {
    struct timeval tv;
    int i;

    if (w->stopping) return;
    w->stopping = 1;
    logStart(LOG_INFO);
    logStr("msg", "stopping");
    logStr("reason", why);
    logEnd();
    for (i = 0; i < w->ngroups; i++) consumerStopReading(&w->groups[i]);
    event_del(w->retention_ev);
    tv.tv_sec = w->cfg->shutdown_timeout_ms / 1000;
    tv.tv_usec = (w->cfg->shutdown_timeout_ms % 1000) * 1000;
    event_add(w->stop_ev, &tv);
    workerCheckStopped(w);
}

static void signalEvent(evutil_socket_t sig, short what, void *arg) {
    worker *w = arg;

    UNUSED(what);
    if (sig == SIGHUP) {
        if (logReopen() == 0)
            logMsg(LOG_INFO, "log reopened (SIGHUP)");
        else
            logMsg(LOG_ERROR, "cannot reopen the log, still writing to the "
                   "old file");
        return;
    }
    workerStop(w, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ------------------------------------------------- set-up and the loop */

static void retentionEvent(evutil_socket_t fd, short what, void *arg) {
    UNUSED(fd);
    UNUSED(what);
    retentionRun(arg);
}

static void cmdState(redisLink *l, int up, void *privdata) {
    UNUSED(l);
    if (up) consumerLinkUp(privdata);
}

static char *defaultConsumer(void) {
    char host[256], *name;
    size_t len;

    if (gethostname(host, sizeof(host)) != 0) strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';
    len = strlen(host) + 24;
    if ((name = malloc(len)) != NULL)
        snprintf(name, len, "%s:%ld", host, (long)getpid());
    return name;
}

/* Releases all the worker holds, its config too; after workerInit(),
 * whether that worked or not. */
void workerFree(worker *w) {
    int i;

    /* the Redis links first: their pending callbacks run (with no reply)
     * while the tasks and admin clients they point to still exist */
    if (w->cmd) linkStop(w->cmd);
    for (i = 0; i < w->ngroups; i++)
        if (w->groups[i].reader) linkStop(w->groups[i].reader);
    if (w->deliverer) deliverFree(w->deliverer);
    if (w->admin) adminClose(w->admin);
    for (i = 0; i < w->ngroups; i++) consumerFree(&w->groups[i]);
    free(w->groups);
    linkFree(w->cmd);
    if (w->sigterm_ev) event_free(w->sigterm_ev);
    if (w->sigint_ev) event_free(w->sigint_ev);
    if (w->sighup_ev) event_free(w->sighup_ev);
    if (w->stop_ev) event_free(w->stop_ev);
    if (w->retention_ev) event_free(w->retention_ev);
    if (w->base) event_base_free(w->base);
    free(w->consumer);
    configFree(w->cfg);
}

/* Sets up the worker of 'cfg', read from 'file': its loop, links, groups,
 * deliverer and admin port (with the table 'commands'), nothing started
 * yet. Returns 0, or -1 with the reason logged. */
int workerInit(worker *w, const char *file, workerConfig *cfg,
               const adminCommand *commands) {
    char err[512];
    int i;

    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    w->config_file = file;
    w->started_ms = monotonicMs();
    w->consumer = cfg->consumer_name ? strdup(cfg->consumer_name)
                                     : defaultConsumer();
    if (w->consumer == NULL || (w->base = event_base_new()) == NULL) {
        logMsg(LOG_ERROR, "out of memory");
        return -1;
    }
    w->sigterm_ev = evsignal_new(w->base, SIGTERM, signalEvent, w);
    w->sigint_ev = evsignal_new(w->base, SIGINT, signalEvent, w);
    w->sighup_ev = evsignal_new(w->base, SIGHUP, signalEvent, w);
    w->stop_ev = evtimer_new(w->base, stopTimeoutEvent, w);
    w->retention_ev = event_new(w->base, -1, EV_PERSIST, retentionEvent, w);
    w->cmd = linkCreate(w->base, cfg, "commands", 10000, cmdState, w);
    w->groups = calloc((size_t)cfg->ngroups, sizeof(group));
    if (!w->sigterm_ev || !w->sigint_ev || !w->sighup_ev || !w->stop_ev ||
        !w->retention_ev || !w->cmd || !w->groups) {
        logMsg(LOG_ERROR, "out of memory");
        return -1;
    }
    for (i = 0; i < cfg->ngroups; i++) {
        w->ngroups++;
        if (consumerInit(w, &w->groups[i], &cfg->groups[i],
                         groupSettled) != 0) {
            logMsg(LOG_ERROR, "out of memory");
            return -1;
        }
    }
    w->deliverer = deliverCreate(w->base, "checkout-worker/" WORKER_VERSION,
                                 err, sizeof(err));
    if (w->deliverer == NULL) {
        logMsg(LOG_ERROR, "%s", err);
        return -1;
    }
    w->admin = adminListen(w->base, cfg->admin.host, cfg->admin.port,
                           cfg->admin_password, commands, w, err,
                           sizeof(err));
    if (w->admin == NULL) {
        logMsg(LOG_ERROR, "%s", err);
        return -1;
    }
    return 0;
}

/* Runs the worker until it stops: the signals and timers armed, the links
 * and groups started, the loop run. Returns 0, or 1 when the loop failed. */
int workerRun(worker *w) {
    struct timeval tv = {RETENTION_INTERVAL_MS / 1000, 0};
    int i, rc = 0;

    event_add(w->sigterm_ev, NULL);
    event_add(w->sigint_ev, NULL);
    event_add(w->sighup_ev, NULL);
    event_add(w->retention_ev, &tv);

    logStart(LOG_INFO);
    logStr("msg", "started");
    logStr("version", WORKER_VERSION);
    logStr("consumer", w->consumer);
    logInt("admin_port", adminPort(w->admin));
    logInt("groups", w->ngroups);
    logInt("pid", (long long)getpid());
    logEnd();

    linkStart(w->cmd);
    for (i = 0; i < w->ngroups; i++) consumerRun(&w->groups[i]);
    if (event_base_dispatch(w->base) < 0) rc = 1;

    logMsg(LOG_INFO, "stopped");
    return rc;
}
