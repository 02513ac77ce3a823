/* The tasks of a group and their whole life: held in arrival order, started
 * while the concurrency allows, delivered over HTTP, and settled by a state
 * script whose outcome taskOutcome() counts, logs and acts on.
 *
 * Ordering: a group's entries with the same subject are handled one at a
 * time, in the order this process got them; a later entry waits (TASK_WAITING)
 * while an earlier one is in flight or waiting for its retry. The entries
 * wait in the group's pending list, owned by this consumer, and the touch
 * (reclaim.c) keeps them from looking idle to reclaim. */

#define _XOPEN_SOURCE 700   /* random() */

#include "task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout_contract.h"
#include "deliver.h"
#include "log.h"
#include "reply.h"
#include "retry.h"
#include "state.h"
#include "util.h"

#define TASK_BUFFER 4               /* entries held per unit of concurrency */
#define TASK_MAX_FIELDS 2048        /* strings of an entry (Lua's unpack()
                                     * takes about 8000 arguments) */

static void taskDeliver(task *t);
static void taskOutcome(task *t, stateOutcome outcome);

/* ------------------------------------------------------------ the list */

static void taskFree(task *t) {
    size_t i;

    for (i = 0; i < t->nfields; i++) free(t->fields[i]);
    free(t->fields);
    free(t->lens);
    free(t->id);
    free(t);
}

static task *taskFind(const group *g, const char *id) {
    task *t;

    for (t = g->tasks; t; t = t->next)
        if (strcmp(t->id, id) == 0) return t;
    return NULL;
}

/* 1 for the states that hold one of the group's concurrency slots. */
static int stateFlies(taskState state) {
    return state == TASK_STARTING || state == TASK_DELIVERING ||
           state == TASK_FINISHING;
}

/* Moves 't' to 'state', keeping the group's in_flight count. */
static void taskSetState(task *t, taskState state) {
    t->g->in_flight += stateFlies(state) - stateFlies(t->state);
    t->state = state;
}

/* Lets go of 't': off the list and freed, its entry left as Redis has it.
 * The group hears of it. */
static void taskDone(task *t) {
    group *g = t->g;
    task **p;

    for (p = &g->tasks; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    g->ntasks--;
    g->in_flight -= stateFlies(t->state);
    taskFree(t);
    g->settled(g);
}

/* A step of the task could not reach Redis (the commands link is down):
 * the task goes back to waiting, its place in its subject's order kept,
 * and starts again from the begin script once the link is back. The begin
 * script makes that safe: a done record, or an entry no longer pending
 * (its outcome had been applied), ends it there. */
static void taskRequeue(task *t) {
    taskSetState(t, TASK_WAITING);
    t->g->requeued = 1;
    t->g->settled(t->g);
}

/* Entries held that are not just waiting for their retry: what the read
 * buffer is measured in. */
static int taskHeld(const group *g) {
    const task *t;
    int n = 0;

    for (t = g->tasks; t; t = t->next)
        if (t->state != TASK_RETRYING) n++;
    return n;
}

/* Returns how many more entries the group may take on now: its buffer
 * holds TASK_BUFFER per unit of concurrency, retries waiting not counted.
 * Never negative. */
int taskRoom(const group *g) {
    int n = g->cfg->concurrency * TASK_BUFFER - taskHeld(g);

    return n > 0 ? n : 0;
}

/* Returns how many retries the group holds that are due now. */
int taskHeldDue(const group *g) {
    long long now = nowMs();
    const task *t;
    int n = 0;

    for (t = g->tasks; t; t = t->next)
        if (t->state == TASK_RETRYING && t->due_ms <= now) n++;
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
    if (fv->type == REDIS_REPLY_ARRAY && fv->elements > TASK_MAX_FIELDS) {
        /* dead-lettered without its fields: no script could carry them */
        t->parse_rc = EVENT_MALFORMED;
        snprintf(t->parse_err, sizeof(t->parse_err),
                 "malformed_event: more than %d fields",
                 TASK_MAX_FIELDS / 2);
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

/* Takes on an entry got from XREADGROUP, a due retry or reclaim. 'entry' is
 * [id, [field, value, ...]]; 'attempt' its delivery count. */
void taskAdopt(group *g, redisReply *entry, long long attempt) {
    task *t, **p;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING)
        return;
    if ((t = taskFind(g, entry->element[0]->str)) != NULL) {
        /* our own retry came due: the same task, one attempt further */
        if (t->state == TASK_RETRYING) {
            t->attempt = (int)attempt;
            taskSetState(t, TASK_WAITING);
            taskDispatch(g);
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
    taskDispatch(g);
}

/* Lets go of the retries held in memory that are overdue by more than
 * 'stale_ms': the due script did not hand them back, so another consumer
 * took them over, or Redis lost them (restarted empty); holding them would
 * block their subjects for good. */
void taskForgetRetries(group *g, long long stale_ms) {
    long long now = nowMs();
    task *t;

    /* from the head again after each: letting go can start others */
again:
    for (t = g->tasks; t; t = t->next) {
        if (t->state == TASK_RETRYING && t->due_ms + stale_ms < now) {
            taskDone(t);
            goto again;
        }
    }
}

/* Frees every task of the group, telling no one: for the group's end,
 * once nothing is out for them any more. */
void taskFreeAll(group *g) {
    task *t, *next;

    for (t = g->tasks; t; t = next) {
        next = t->next;
        taskFree(t);
    }
    g->tasks = NULL;
}

/* ------------------------------------------------------------ outcomes */

static void logTask(logLevel level, const task *t, const char *result) {
    logStart(level);
    logStr("group", t->g->cfg->name);
    logStr("id", t->id);
    if (t->ev.id) logStr(CHECKOUT_CE_ID, t->ev.id);
    if (t->ev.type) logStr(CHECKOUT_CE_TYPE, t->ev.type);
    logInt("attempt", t->attempt);
    logStr("result", result);
}

static void logDuration(const task *t) {
    logInt("duration_ms", monotonicMs() - t->started_ms);
}

/* The held entry 'id' is not this consumer's any more (another consumer
 * reclaimed it, or it was acknowledged by an outcome whose reply was
 * lost): a task of it that waits for its turn or its retry is let go;
 * one in flight finishes, its outcome scripts are safe either way. */
void taskLost(group *g, const char *id) {
    task *t = taskFind(g, id);

    if (t && (t->state == TASK_WAITING || t->state == TASK_RETRYING)) {
        logTask(LOG_WARN, t, "released");
        logStr("reason", "no longer pending for this consumer");
        logEnd();
        taskDone(t);
    }
}

/* The entry 'id' was deleted from the stream while pending, and the 'via'
 * script that found it dead-lettered it: counted and logged, and a task of
 * it that waits is let go (it would block its subject). */
void taskDeleted(group *g, const char *id, const char *via) {
    task *t = taskFind(g, id);

    g->stats.processed++;
    g->stats.dead_lettered++;
    logStart(LOG_ERROR);
    logStr("group", g->cfg->name);
    logStr("id", id);
    logStr("result", "deleted");
    logStr("error", CHECKOUT_DEAD_DELETED);
    logStr("via", via);
    logEnd();
    if (t && (t->state == TASK_WAITING || t->state == TASK_RETRYING))
        taskDone(t);
}

/* The outcome steps: 't' is FINISHING until the script answers
 * (taskOutcome()); one that cannot go out sends 't' back to wait for the
 * link. 'why' is kept for the outcome's log line. */

static void taskDead(task *t, const char *error) {
    taskSetState(t, TASK_FINISHING);
    snprintf(t->why, sizeof(t->why), "%s", error);
    if (stateDead(t, t->why, taskOutcome) != 0) taskRequeue(t);
}

static void taskSkip(task *t, const char *reason) {
    taskSetState(t, TASK_FINISHING);
    snprintf(t->why, sizeof(t->why), "%s", reason);
    if (stateSkip(t, taskOutcome) != 0) taskRequeue(t);
}

static void taskRetry(task *t, long long delay_ms, const char *error) {
    taskSetState(t, TASK_FINISHING);
    snprintf(t->why, sizeof(t->why), "%s", error);
    t->backoff_ms = delay_ms;
    t->due_ms = nowMs() + delay_ms;
    if (stateRetry(t, taskOutcome) != 0) taskRequeue(t);
}

static void taskFinish(task *t, const handlerReply *reply) {
    taskSetState(t, TASK_FINISHING);
    if (reply->nemit > 0 &&
        strlen(t->ev.id) + strlen(t->g->cfg->name) + 8 > EVENT_MAX_VALUE) {
        /* the emitted ids would be too long for any group to accept */
        taskDead(t, "bad_reply: the parent ce_id is too long to derive "
                    "emitted ids from");
        return;
    }
    if (stateFinish(t, reply, taskOutcome) != 0) taskRequeue(t);
}

/* What a state script reported for 't': the one place where an outcome is
 * counted and logged and the task's next step chosen. */
static void taskOutcome(task *t, stateOutcome outcome) {
    group *g = t->g;

    switch (outcome) {
    case STATE_LINK_DOWN:
        taskRequeue(t);
        return;
    case STATE_REFUSED:
        /* let go, its entry pending: reclaim brings it back after
         * min-idle rather than at once */
        taskDone(t);
        return;
    case STATE_BEGUN:
        if (g->w->stopping)
            taskDone(t);        /* not started: left pending */
        else
            taskDeliver(t);
        return;
    case STATE_DELETED:
        taskDead(t, CHECKOUT_DEAD_DELETED);
        return;
    case STATE_RELEASED:
        logTask(LOG_INFO, t, "released");
        logStr("reason", "no longer pending for this consumer");
        break;
    case STATE_ALREADY_DONE:
        g->stats.processed++;
        g->stats.duplicates++;
        logTask(LOG_INFO, t, "duplicate");
        logStr("reason", "done record found: acknowledged without a call");
        break;
    case STATE_DONE:
    case STATE_DONE_MEANWHILE:
        g->stats.processed++;
        if (outcome == STATE_DONE_MEANWHILE) {
            g->stats.duplicates++;
            logTask(LOG_INFO, t, "duplicate");
            logStr("reason", "finished meanwhile by another attempt");
        } else {
            g->stats.succeeded++;
            logTask(LOG_INFO, t, "done");
        }
        logInt("status", t->status);
        logDuration(t);
        break;
    case STATE_RETRYING:
        /* the task stays (its subject waits) but frees its slot */
        g->stats.retried++;
        logTask(LOG_WARN, t, "retry");
        logStr("error", t->why);
        if (t->status) logInt("status", t->status);
        logInt("next_ms", t->backoff_ms);
        logDuration(t);
        logEnd();
        taskSetState(t, TASK_RETRYING);
        g->settled(g);
        return;
    case STATE_DEAD:
        g->stats.processed++;
        g->stats.dead_lettered++;
        logTask(LOG_ERROR, t, "dead");
        logStr("error", t->why);
        if (t->status) logInt("status", t->status);
        logDuration(t);
        break;
    case STATE_SKIPPED:
        g->stats.processed++;
        g->stats.skipped++;
        logTask(LOG_INFO, t, "skipped");
        logStr("reason", t->why);
        break;
    }
    logEnd();
    taskDone(t);
}

/* ------------------------------------------------------------ starting */

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
 * script (done record, task state), whose outcome goes to taskOutcome(). */
static void taskStart(task *t) {
    group *g = t->g;
    char why[200];

    t->started_ms = monotonicMs();
    taskSetState(t, TASK_FINISHING);
    /* a group is not asked about events it does not handle, even broken
     * ones (eventParse fills in what it could read) */
    if (t->ev.replay_group && strcmp(t->ev.replay_group, g->cfg->name) != 0) {
        taskSkip(t, "replayed for another group");
        return;
    }
    if (t->ev.type && !typeHandled(g, t->ev.type)) {
        taskSkip(t, "type not handled");
        return;
    }
    if (t->parse_rc != EVENT_OK) {
        taskDead(t, t->parse_err);
        return;
    }
    if (t->attempt > g->cfg->max_attempts) {
        /* delivered again and again without an outcome: a crash loop */
        snprintf(why, sizeof(why), "poison: delivered %d times "
                 "(max-attempts %d)", t->attempt, g->cfg->max_attempts);
        taskDead(t, why);
        return;
    }
    taskSetState(t, TASK_STARTING);
    if (stateBegin(t, taskOutcome) != 0) taskRequeue(t);
}

/* Starts whatever may start: tasks in arrival order, each once no earlier
 * task has its subject, while the concurrency allows. A start can end its
 * task at once (Redis down) and so change the list: the walk begins again
 * from the head after each start, and a call from within only asks for
 * that. */
void taskDispatch(group *g) {
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
            taskDead(t, error);
            return;
        }
        if (replyParse(&reply, r->content_type, r->body, r->bodylen, error,
                       sizeof(error)) != REPLY_OK) {
            g->stats.failed++;
            taskDead(t, error);
            return;
        }
        taskFinish(t, &reply);
        replyFree(&reply);
        return;
    }

    g->stats.failed++;
    if (verdict == VERDICT_DEAD) {
        taskDead(t, error);
    } else if (retryShouldDeadLetter(t->attempt, g->cfg->max_attempts)) {
        char why[360];

        snprintf(why, sizeof(why), "attempts exhausted: %s", error);
        taskDead(t, why);
    } else {
        uint64_t rnd = ((uint64_t)random() << 32) ^ (uint64_t)random();

        taskRetry(t, retryDelay(t->attempt, g->cfg->backoff_base_ms,
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
    headers[n++] = header(CHECKOUT_HEADER_SPECVERSION, ev->specversion);
    headers[n++] = header(CHECKOUT_HEADER_ID, ev->id);
    headers[n++] = header(CHECKOUT_HEADER_TYPE, ev->type);
    headers[n++] = header(CHECKOUT_HEADER_SOURCE, ev->source);
    if (ev->time) headers[n++] = header(CHECKOUT_HEADER_TIME, ev->time);
    headers[n++] = header(CHECKOUT_HEADER_SUBJECT, ev->subject);
    headers[n++] = header(CHECKOUT_HEADER_SCHEMAVERSION, ev->schemaversion);
    headers[n++] = header(CHECKOUT_DELIVERY_KEY_HEADER, key);
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
        taskSetState(t, TASK_DELIVERING);
        t->started_ms = monotonicMs();
        rc = deliverStart(g->w->deliverer, &req, taskDelivered, t);
    }
    for (i = 0; i < n; i++) free(headers[i]);
    if (rc != 0) {
        /* could not even start: like a connection error, try again */
        g->stats.failed++;
        taskRetry(t, g->cfg->backoff_base_ms, "could not start the request");
    }
}
