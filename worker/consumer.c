/* The consumer loop of one group: XREADGROUP on the group's own link, the
 * entries it holds (read, reclaimed or due again), per-subject ordering, the
 * concurrency limit, and the HTTP delivery of each attempt.
 *
 * Ordering: a group's entries with the same ce_subject are handled one at a
 * time, in the order this process got them; a later entry waits (TASK_WAITING)
 * while an earlier one is in flight or waiting for its retry. The entries
 * wait in the group's pending list, owned by this consumer, and stateTouch()
 * keeps them from looking idle to reclaim. */

#define _XOPEN_SOURCE 700   /* random() */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "deliver.h"
#include "log.h"
#include "reply.h"
#include "retry.h"
#include "worker.h"

#define CONSUMER_BLOCK_MS 2000      /* one XREADGROUP waits this long */
#define CONSUMER_MAX_RETRYING 4096  /* entries waiting for a retry, held */
#define CONSUMER_MAX_FIELDS 2048    /* strings of an entry (Lua's unpack()
                                     * takes about 8000 arguments) */

static void consumerRead(group *g);
static void taskDeliver(task *t);

/* ------------------------------------------------------------ the tasks */

static void taskFree(task *t) {
    size_t i;

    for (i = 0; i < t->nfields; i++) free(t->fields[i]);
    free(t->fields);
    free(t->lens);
    free(t->id);
    free(t);
}

static task *findTask(const group *g, const char *id) {
    task *t;

    for (t = g->tasks; t; t = t->next)
        if (strcmp(t->id, id) == 0) return t;
    return NULL;
}

/* Entries held that are not just waiting for their retry: what the read
 * buffer is measured in. */
int consumerHeld(const group *g) {
    const task *t;
    int n = 0;

    for (t = g->tasks; t; t = t->next)
        if (t->state != TASK_RETRYING) n++;
    return n;
}

/* Copies a stream entry ([id, [field, value, ...]]) into a new task. */
static task *taskCreate(group *g, redisReply *entry, int attempt) {
    redisReply *id = entry->element[0], *fv = entry->element[1];
    task *t = calloc(1, sizeof(*t));
    size_t i;

    if (t == NULL) return NULL;
    t->g = g;
    t->attempt = attempt;
    t->state = TASK_WAITING;
    if ((t->id = strdup(id->str)) == NULL) goto oom;
    if (fv->type == REDIS_REPLY_ARRAY && fv->elements > CONSUMER_MAX_FIELDS) {
        /* dead-lettered without its fields: no script could carry them */
        t->parse_rc = EVENT_MALFORMED;
        snprintf(t->parse_err, sizeof(t->parse_err),
                 "malformed_event: more than %d fields",
                 CONSUMER_MAX_FIELDS / 2);
        return t;
    }
    if (fv->type == REDIS_REPLY_ARRAY && fv->elements > 0) {
        t->fields = calloc(fv->elements, sizeof(char *));
        t->lens = calloc(fv->elements, sizeof(size_t));
        if (t->fields == NULL || t->lens == NULL) goto oom;
        t->nfields = fv->elements;
        for (i = 0; i < fv->elements; i++) {
            redisReply *f = fv->element[i];
            const char *s = f->type == REDIS_REPLY_STRING ? f->str : "";
            size_t len = f->type == REDIS_REPLY_STRING ? (size_t)f->len : 0;

            if ((t->fields[i] = malloc(len + 1)) == NULL) goto oom;
            memcpy(t->fields[i], s, len);
            t->fields[i][len] = '\0';
            t->lens[i] = len;
        }
    }
    if (t->nfields % 2 != 0) {
        t->parse_rc = EVENT_MALFORMED;
        snprintf(t->parse_err, sizeof(t->parse_err),
                 "malformed_event: odd number of fields");
    } else {
        t->parse_rc = eventParse(&t->ev, t->fields, t->lens, t->nfields / 2,
                                 g->cfg->schema_versions,
                                 g->cfg->nschema_versions, t->parse_err,
                                 sizeof(t->parse_err));
    }
    /* a malformed event has no subject to keep in order or state to
     * write; one of an unsupported version has (all else was checked) */
    t->has_event = t->parse_rc == EVENT_OK ||
                   t->parse_rc == EVENT_UNSUPPORTED;
    return t;

oom:
    taskFree(t);
    return NULL;
}

/* Compares two stream entry ids ("ms-seq") as Redis orders them. */
static int idCompare(const char *a, const char *b) {
    unsigned long long ams, aseq = 0, bms, bseq = 0;
    char *end;

    ams = strtoull(a, &end, 10);
    if (*end == '-') aseq = strtoull(end + 1, NULL, 10);
    bms = strtoull(b, &end, 10);
    if (*end == '-') bseq = strtoull(end + 1, NULL, 10);
    if (ams != bms) return ams < bms ? -1 : 1;
    if (aseq != bseq) return aseq < bseq ? -1 : 1;
    return 0;
}

/* Whether an earlier task of the group has the same subject. */
static int subjectBusy(const group *g, const task *t) {
    const task *o;

    if (!t->has_event) return 0;
    for (o = g->tasks; o && o != t; o = o->next)
        if (o->has_event && strcmp(o->ev.subject, t->ev.subject) == 0)
            return 1;
    return 0;
}

static int typeHandled(const group *g, const char *type) {
    int i;

    if (g->cfg->types == NULL) return 1;
    for (i = 0; i < g->cfg->ntypes; i++)
        if (strcmp(g->cfg->types[i], type) == 0) return 1;
    return 0;
}

/* Starts an attempt: the checks that need no call first, then the begin
 * script (done record, task state), whose reply goes to consumerBegun(). */
static void taskStart(task *t) {
    group *g = t->g;
    char why[200];

    g->in_flight++;
    t->started_ms = monotonicMs();
    t->state = TASK_FINISHING;
    /* a group is not asked about events it does not handle, even broken
     * ones (eventParse fills in what it could read) */
    if (t->ev.replay_group && strcmp(t->ev.replay_group, g->cfg->name) != 0) {
        stateSkip(t, "replayed for another group");
        return;
    }
    if (t->ev.type && !typeHandled(g, t->ev.type)) {
        stateSkip(t, "type not handled");
        return;
    }
    if (t->parse_rc != EVENT_OK) {
        stateDead(t, t->parse_err);
        return;
    }
    if (t->attempt > g->cfg->max_attempts) {
        /* delivered again and again without an outcome: a crash loop */
        snprintf(why, sizeof(why), "poison: delivered %d times "
                 "(max-attempts %d)", t->attempt, g->cfg->max_attempts);
        stateDead(t, why);
        return;
    }
    t->state = TASK_STARTING;
    stateBegin(t);
}

/* Starts whatever may start: tasks in arrival order, each once no earlier
 * task has its subject, while the concurrency allows. A start can end its
 * task at once (Redis down) and so change the list: the walk begins again
 * from the head after each start, and a call from within only asks for
 * that. */
static void consumerDispatch(group *g) {
    task *t;

    if (g->dispatching) {
        g->dispatch_again = 1;
        return;
    }
    g->dispatching = 1;
    g->requeued = 0;
    do {
        g->dispatch_again = 0;
        for (t = g->tasks; t; t = t->next) {
            if (g->w->stopping || g->paused || !g->w->cmd->ready ||
                g->in_flight >= g->cfg->concurrency)
                break;
            if (t->state == TASK_WAITING && !subjectBusy(g, t)) {
                taskStart(t);
                g->dispatch_again = 1;
                break;
            }
        }
        /* a start that could not reach Redis is not tried again at once:
         * the link's return kicks the group */
        if (g->requeued) break;
    } while (g->dispatch_again);
    g->dispatching = 0;
}

/* The begin script found no completion record: deliver. */
void consumerBegun(task *t) {
    if (t->g->w->stopping) {
        consumerTaskDone(t);    /* not started: left pending */
        return;
    }
    taskDeliver(t);
}

void consumerTaskDone(task *t) {
    group *g = t->g;
    task **p;

    for (p = &g->tasks; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    g->ntasks--;
    if (t->state != TASK_RETRYING && t->state != TASK_WAITING)
        g->in_flight--;
    taskFree(t);
    consumerKick(g);
    workerCheckStopped(g->w);
}

/* A step of the task could not reach Redis (the commands link is down):
 * the task goes back to waiting, its place in its subject's order kept,
 * and starts again from the begin script once the link is back. The begin
 * script makes that safe: a done record, or an entry no longer pending
 * (its outcome had been applied), ends it there. */
void consumerTaskRequeue(task *t) {
    group *g = t->g;

    if (t->state != TASK_RETRYING && t->state != TASK_WAITING)
        g->in_flight--;
    t->state = TASK_WAITING;
    g->requeued = 1;
    consumerKick(g);
    workerCheckStopped(g->w);
}

/* The retry is scheduled: the task stays (its subject waits) but frees its
 * slot. */
void consumerTaskRetrying(task *t, long long due_ms) {
    group *g = t->g;

    t->state = TASK_RETRYING;
    t->due_ms = due_ms;
    g->in_flight--;
    consumerKick(g);
    workerCheckStopped(g->w);
}

/* Takes on an entry got from XREADGROUP, a due retry or reclaim. 'entry' is
 * [id, [field, value, ...]]. */
void consumerAdopt(group *g, redisReply *entry, long long attempt) {
    task *t, **p;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING)
        return;
    if ((t = findTask(g, entry->element[0]->str)) != NULL) {
        /* our own retry came due: the same task, one attempt further */
        if (t->state == TASK_RETRYING) {
            t->attempt = (int)attempt;
            t->state = TASK_WAITING;
            consumerDispatch(g);
        }
        return;
    }
    if ((t = taskCreate(g, entry, (int)attempt)) == NULL) {
        /* left pending: reclaim brings it back */
        logMsg(LOG_ERROR, "out of memory holding entry %s of group %s",
               entry->element[0]->str, g->cfg->name);
        return;
    }
    /* at the end, but before a later entry of its subject that is still
     * waiting (a retry or a reclaimed entry coming back) */
    for (p = &g->tasks; *p; p = &(*p)->next) {
        task *o = *p;

        if (t->has_event && o->has_event && o->state == TASK_WAITING &&
            strcmp(o->ev.subject, t->ev.subject) == 0 &&
            idCompare(o->id, t->id) > 0)
            break;
    }
    t->next = *p;
    *p = t;
    g->ntasks++;
    consumerDispatch(g);
}

/* ------------------------------------------------------------- delivery */

static void taskDelivered(const deliveryResult *r, void *privdata) {
    task *t = privdata;
    group *g = t->g;
    char error[300];
    retryVerdict verdict;
    handlerReply reply;

    verdict = retryVerdictFor(r->error == DELIVER_OK, r->status);
    if (r->error == DELIVER_OK)
        snprintf(error, sizeof(error), "http %d", r->status);
    else
        snprintf(error, sizeof(error), "%s", r->error_text);
    t->status = r->status;

    if (verdict == VERDICT_DONE) {
        memset(&reply, 0, sizeof(reply));
        if (r->truncated && r->content_type &&
            strstr(r->content_type, "json") != NULL) {
            /* what it asks for cannot be known: not done quietly */
            g->stats.failed++;
            snprintf(error, sizeof(error), "bad_reply: body over %d bytes",
                     DELIVER_MAX_BODY);
            stateDead(t, error);
            return;
        }
        if (replyParse(&reply, r->content_type, r->body, r->bodylen, error,
                       sizeof(error)) != REPLY_OK) {
            g->stats.failed++;
            stateDead(t, error);
            return;
        }
        stateFinish(t, &reply);
        replyFree(&reply);
        return;
    }

    g->stats.failed++;
    if (verdict == VERDICT_DEAD) {
        stateDead(t, error);
    } else if (retryShouldDeadLetter(t->attempt, g->cfg->max_attempts)) {
        char why[360];

        snprintf(why, sizeof(why), "attempts exhausted: %s", error);
        stateDead(t, why);
    } else {
        uint64_t rnd = ((uint64_t)random() << 32) ^ (uint64_t)random();

        stateRetry(t, retryDelay(t->attempt, g->cfg->backoff_base_ms,
                                 g->cfg->backoff_cap_ms, rnd), error);
    }
}

/* "Name: value" for a header from an event field (validated by
 * eventParse: printable ASCII). */
static char *header(const char *name, const char *value) {
    size_t len = strlen(name) + strlen(value) + 3;
    char *h = malloc(len);

    if (h) snprintf(h, len, "%s: %s", name, value);
    return h;
}

static void taskDeliver(task *t) {
    group *g = t->g;
    const streamEvent *ev = &t->ev;
    char *headers[12], key[600];
    deliveryRequest req;
    int n = 0, i, rc;

    snprintf(key, sizeof(key), "%s:%s", g->cfg->name, ev->id);
    headers[n++] = header("Content-Type", ev->content_type);
    headers[n++] = header("ce-specversion", ev->specversion);
    headers[n++] = header("ce-id", ev->id);
    headers[n++] = header("ce-type", ev->type);
    headers[n++] = header("ce-source", ev->source);
    if (ev->time) headers[n++] = header("ce-time", ev->time);
    headers[n++] = header("ce-subject", ev->subject);
    headers[n++] = header("ce-schemaversion", ev->schemaversion);
    headers[n++] = header("Idempotency-Key", key);
    headers[n] = NULL;

    rc = 0;
    for (i = 0; i < n; i++)
        if (headers[i] == NULL) rc = -1;
    if (rc == 0) {
        req.url = g->cfg->url;
        req.timeout_ms = g->cfg->timeout_ms;
        req.body = ev->data;
        req.bodylen = ev->datalen;
        req.headers = (const char *const *)headers;
        t->state = TASK_DELIVERING;
        t->started_ms = monotonicMs();
        rc = deliverStart(g->w->deliverer, &req, taskDelivered, t);
    }
    for (i = 0; i < n; i++) free(headers[i]);
    if (rc != 0) {
        /* could not even start: like a connection error, try again */
        t->state = TASK_FINISHING;
        g->stats.failed++;
        stateRetry(t, g->cfg->backoff_base_ms, "could not start the request");
    }
}

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
                consumerAdopt(g, s->element[1]->element[j], 1);
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

    room = g->cfg->concurrency * CONSUMER_BUFFER - consumerHeld(g);
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
    consumerDispatch(g);
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
void consumerStart(group *g) {
    const char *argv[6] = {"XGROUP", "CREATE", g->cfg->stream, g->cfg->name,
                           "0", "MKSTREAM"};

    if (g->created || g->creating) return;
    if (linkCommandStrings(g->w->cmd, consumerOnCreate, g, 6, argv) == 0)
        g->creating = 1;
}

/* Lets go of the retries held in memory that are overdue by more than
 * 'stale_ms': the due script did not hand them back, so another consumer
 * took them over, or Redis lost them (restarted empty); holding them would
 * block their subjects for good. */
void consumerForgetRetries(group *g, long long stale_ms) {
    long long now = nowMs();
    task *t;

    /* from the head again after each: letting go can start others */
again:
    for (t = g->tasks; t; t = t->next) {
        if (t->state == TASK_RETRYING && t->due_ms + stale_ms < now) {
            consumerTaskDone(t);
            goto again;
        }
    }
}

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

static void touchEvent(evutil_socket_t fd, short what, void *arg) {
    group *g = arg;

    UNUSED(fd);
    UNUSED(what);
    consumerForgetRetries(g, g->cfg->min_idle_ms);
    stateTouch(g);
}

static void addPersist(struct event *ev, long long ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_add(ev, &tv);
}

static long long clampMs(long long v, long long lo, long long hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Sets up the group of 'cfg': its link and timers, not started yet. */
int consumerInit(worker *w, group *g, groupConfig *cfg) {
    memset(g, 0, sizeof(*g));
    g->w = w;
    g->cfg = cfg;
    g->pending = -1;
    g->lag = -1;
    strcpy(g->reclaim_cursor, "0-0");
    snprintf(g->reader_name, sizeof(g->reader_name), "reader %s", cfg->name);
    snprintf(g->retry_key, sizeof(g->retry_key), "checkout:worker:retry:%s",
             cfg->name);
    g->reader = linkCreate(w->base, w->cfg, g->reader_name,
                           CONSUMER_BLOCK_MS + 5000, readerState, g);
    g->due_ev = event_new(w->base, -1, EV_PERSIST, dueEvent, g);
    g->reclaim_ev = event_new(w->base, -1, EV_PERSIST, reclaimEvent, g);
    g->touch_ev = event_new(w->base, -1, EV_PERSIST, touchEvent, g);
    if (g->reader == NULL || g->due_ev == NULL || g->reclaim_ev == NULL ||
        g->touch_ev == NULL)
        return -1;
    return 0;
}

/* Starts the group's link and timers: due retries are looked for at half
 * the base backoff, idle entries at half of min-idle (at most every 5 s),
 * and the entries held are touched at a third of min-idle. */
void consumerRun(group *g) {
    linkStart(g->reader);
    addPersist(g->due_ev, clampMs(g->cfg->backoff_base_ms / 2, 20, 1000));
    addPersist(g->reclaim_ev, clampMs(g->cfg->min_idle_ms / 2, 50, 5000));
    addPersist(g->touch_ev, clampMs(g->cfg->min_idle_ms / 3, 20, 10000));
}

/* Stops reading: the link goes (an XREADGROUP out is dropped; what Redis
 * may have handed to it stays pending for reclaim). */
void consumerStopReading(group *g) {
    if (g->reader) linkStop(g->reader);
    if (g->due_ev) event_del(g->due_ev);
    if (g->reclaim_ev) event_del(g->reclaim_ev);
    if (g->touch_ev) event_del(g->touch_ev);
}

void consumerFree(group *g) {
    task *t, *next;

    linkFree(g->reader);
    if (g->due_ev) event_free(g->due_ev);
    if (g->reclaim_ev) event_free(g->reclaim_ev);
    if (g->touch_ev) event_free(g->touch_ev);
    for (t = g->tasks; t; t = next) {
        next = t->next;
        taskFree(t);
    }
    g->tasks = NULL;
}
