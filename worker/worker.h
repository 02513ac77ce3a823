/* The running worker: what its modules share. One process, one thread, one
 * libevent loop; every struct here is owned by the worker and freed by
 * workerFree() (main.c). */

#ifndef CHECKOUT_WORKER_WORKER_H
#define CHECKOUT_WORKER_WORKER_H

#include <stddef.h>

#include "admin.h"
#include "config.h"
#include "event.h"
#include "redis.h"
#include "reply.h"
#include "util.h"

#define WORKER_VERSION "0.1.0"
#define CONSUMER_BUFFER 4       /* entries held per unit of concurrency */

struct event_base;
struct event;
struct deliverer;

typedef struct worker worker;
typedef struct group group;

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
 * after their callback). */
typedef struct task {
    group *g;
    struct task *next;          /* the group's list, in arrival order */
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
    long long due_ms;           /* TASK_RETRYING: wall clock */
    int has_event;              /* ev.subject etc. are usable */
    int status;                 /* HTTP status of the last attempt, or 0 */
} task;

/* Counters shown by INFO. */
typedef struct groupStats {
    long long processed;        /* outcomes of any kind */
    long long succeeded;
    long long failed;           /* attempts that failed */
    long long retried;
    long long dead_lettered;
    long long skipped;
    long long duplicates;
} groupStats;

struct group {
    worker *w;
    groupConfig *cfg;
    redisLink *reader;          /* its own link: XREADGROUP BLOCK holds it */
    char reader_name[160];
    char retry_key[512];        /* checkout:worker:retry:<group> */
    int created;                /* XGROUP CREATE done on this Redis */
    int creating;
    int reading;                /* an XREADGROUP is out */
    int claiming;               /* a due-retry claim is out */
    int reclaiming;             /* an XAUTOCLAIM is out */
    int touching;               /* a touch is out */
    int paused;
    int dispatching, dispatch_again;    /* consumerDispatch() */
    int requeued;               /* a task went back to waiting meanwhile */
    char reclaim_cursor[64];
    int reclaim_count;          /* entries the last XAUTOCLAIM asked for */
    int reclaim_more;           /* it may have left some: go on at once */
    task *tasks;                /* held entries, oldest first */
    int ntasks;
    int in_flight;              /* TASK_STARTING/DELIVERING/FINISHING */
    groupStats stats;
    long long pending;          /* from XINFO GROUPS; -1: unknown */
    long long lag;
    struct event *due_ev;       /* looks for retries that are due */
    struct event *reclaim_ev;
    struct event *touch_ev;
};

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

/* Lua, for the scripts that find an entry deleted from the stream while
 * still pending: its dead letter, with no fields of the event to keep.
 * The arguments are Lua expressions of the script using it. */
#define LUA_DEAD_DELETED(DLQ, GROUP, STREAM, ID, ATTEMPTS, NOW, CONSUMER) \
    "redis.call('XADD', " DLQ ", '*', 'group', " GROUP ", " \
    "'stream', " STREAM ", 'error', 'deleted_before_delivery', " \
    "'attempts', " ATTEMPTS ", 'original_id', " ID ", " \
    "'failed_at', " NOW ", 'consumer', " CONSUMER ") "

/* consumer.c */
int consumerInit(worker *w, group *g, groupConfig *cfg);
void consumerRun(group *g);
void consumerStopReading(group *g);
void consumerFree(group *g);
void consumerStart(group *g);
void consumerLinkUp(worker *w);
void consumerKick(group *g);
void consumerAdopt(group *g, redisReply *entry, long long attempt);
void consumerBegun(task *t);
void consumerTaskDone(task *t);
void consumerTaskRetrying(task *t, long long due_ms);
void consumerTaskRequeue(task *t);
void consumerForgetRetries(group *g, long long stale_ms);
int consumerHeld(const group *g);

/* state.c: the scripts that move an entry on */
void stateBegin(task *t);
void stateFinish(task *t, const handlerReply *reply);
void stateRetry(task *t, long long delay_ms, const char *error);
void stateDead(task *t, const char *error);
void stateSkip(task *t, const char *why);
void stateTouch(group *g);
void stateDeleted(group *g, const char *id, const char *via);

/* reclaim.c */
void reclaimDue(group *g);
void reclaimIdle(group *g);
void retentionRun(worker *w);

/* deadletter.c */
typedef void replayDoneProc(long long replayed, const char *error,
                            void *privdata);
int deadletterReplay(worker *w, const char *id, replayDoneProc *fn,
                     void *privdata);

/* commands.c */
extern const adminCommand workerCommands[];

/* main.c */
void workerStop(worker *w, const char *why);
group *workerGroup(worker *w, const char *name);
void workerCheckStopped(worker *w);

#endif
