/* The worker's data: the worker, its groups and the tasks they hold. Plain
 * structs that the modules share; once set up, each field is written by the
 * module its comment names, and only read by the others.
 *
 * Ownership: main.c holds the one worker, which worker.c sets up and frees
 * with all it points to. The worker owns its groups: consumer.c sets each
 * up and frees it. A group owns its tasks: task.c creates and frees them.
 * What is out for a task in flight (its script, its HTTP request) holds its
 * pointer, and task.c frees a task only once nothing is out for it; at
 * exit, worker.c stops the links and the deliverer first, which calls
 * what is out with no result while the tasks still exist. */

#ifndef CHECKOUT_WORKER_TYPES_H
#define CHECKOUT_WORKER_TYPES_H

#include <stddef.h>

#include "admin.h"
#include "config.h"
#include "event.h"
#include "redis.h"

struct event_base;
struct event;
struct deliverer;

typedef struct worker worker;
typedef struct group group;
typedef struct task task;

/* Where a task is in its life. */
typedef enum taskState {
    TASK_WAITING,       /* behind an earlier task of the same subject */
    TASK_STARTING,      /* its begin script is running */
    TASK_DELIVERING,    /* the HTTP request is out */
    TASK_FINISHING,     /* its outcome script is running */
    TASK_RETRYING       /* in the retry schedule until its due time */
} taskState;

/* One stream entry this worker holds: read, reclaimed or due for a retry,
 * and not yet acknowledged. Its fields are copies (hiredis frees replies
 * after their callback). All of it is task.c's. */
struct task {
    group *g;
    task *next;                 /* the group's list, in arrival order */
    char *id;                   /* stream entry id */
    char **fields;              /* field, value, field, value ... */
    size_t *lens;
    size_t nfields;             /* entries in fields[] (2 per pair) */
    streamEvent ev;             /* points into fields[] */
    int parse_rc;               /* EVENT_OK, EVENT_MALFORMED, ... */
    char parse_err[160];
    int attempt;                /* the entry's delivery count */
    taskState state;
    long long started_ms;       /* monotonic, this attempt */
    long long due_ms;           /* its retry's due time: wall clock */
    long long backoff_ms;       /* its retry's delay, for the log line */
    int has_event;              /* ev.subject etc. are usable */
    int status;                 /* HTTP status of the last attempt, or 0 */
    char why[400];              /* the error or reason of the outcome its
                                 * script is recording, for the log line */
};

/* Counters shown by INFO; task.c keeps them. */
typedef struct groupStats {
    long long processed;        /* outcomes of any kind */
    long long succeeded;
    long long failed;           /* attempts that failed */
    long long retried;
    long long dead_lettered;
    long long skipped;
    long long duplicates;
} groupStats;

/* Called by task.c once a task of 'g' has settled out of flight: done and
 * gone, back to waiting, or waiting for its retry. The group may have room
 * for more, and a stopping worker may have nothing left in flight. */
typedef void groupSettledProc(group *g);

struct group {
    worker *w;
    groupConfig *cfg;
    char retry_key[512];        /* its retry schedule (the contract) */
    int paused;                 /* commands.c: PAUSE, RESUME */

    /* consumer.c: the group in Redis, and reading */
    redisLink *reader;          /* its own link: XREADGROUP BLOCK holds it */
    char reader_name[160];
    int created;                /* XGROUP CREATE done on this Redis */
    int creating;
    int reading;                /* an XREADGROUP is out */
    groupSettledProc *settled;  /* given by consumerInit()'s caller */

    /* task.c: the entries held */
    task *tasks;                /* oldest first */
    int ntasks;
    int in_flight;              /* TASK_STARTING/DELIVERING/FINISHING */
    groupStats stats;
    int dispatching, dispatch_again;    /* taskDispatch() */
    int requeued;               /* a task went back to waiting meanwhile */

    /* reclaim.c: entries got back from Redis, and its timers */
    int claiming;               /* a due-retry claim is out */
    int reclaiming;             /* an XAUTOCLAIM is out */
    char reclaim_cursor[64];
    int reclaim_count;          /* entries the last XAUTOCLAIM asked for */
    int reclaim_more;           /* it may have left some: go on at once */
    struct event *due_ev;       /* looks for retries that are due */
    struct event *reclaim_ev;
    struct event *touch_ev;

    /* state.c */
    int touching;               /* a touch is out */

    /* commands.c: INFO, from XINFO GROUPS */
    long long pending;          /* -1: unknown */
    long long lag;
};

/* All of it worker.c's. */
struct worker {
    struct event_base *base;
    workerConfig *cfg;
    const char *config_file;
    char *consumer;             /* this process's consumer name */
    redisLink *cmd;             /* every non-blocking command */
    group *groups;
    int ngroups;
    struct deliverer *deliverer;
    adminServer *admin;
    long long started_ms;
    int stopping;
    struct event *sigterm_ev, *sigint_ev, *sighup_ev;
    struct event *stop_ev;      /* shutdown-timeout */
    struct event *retention_ev;
};

#endif
