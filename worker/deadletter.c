/* Replaying dead letters (REPLAY id|ALL), by lua/replay.lua: an entry of
 * the dead-letter stream goes back to the stream it came from as a new
 * entry (so with a fresh delivery count), marked for the group it died in
 * only, and the checkout's task field is set back to pending. A dead letter
 * without fields of its own (deleted before delivery) stays. The layout of
 * a dead letter: docs/contract.md. */

#define _POSIX_C_SOURCE 200809L

#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "replay.lua.h"
#include "script.h"
#include "util.h"

#define REPLAY_BATCH 100

typedef struct replayCall {
    worker *w;
    int all;
    char id[64];            /* the one id, or the last id of the batch */
    char stop[64];          /* REPLAY ALL: the newest when it began */
    long long replayed;
    replayDoneProc *fn;
    void *privdata;
} replayCall;

static int replaySend(replayCall *rc);

static void replayFinish(replayCall *rc, const char *error) {
    char why[300];

    if (rc->replayed > 0 || error == NULL)
        logMsg(LOG_INFO, "replayed %lld dead letters", rc->replayed);
    if (error && rc->replayed > 0) {
        /* what was replayed is replayed: say so */
        snprintf(why, sizeof(why), "%s (after replaying %lld)", error,
                 rc->replayed);
        error = why;
    }
    rc->fn(rc->replayed, error, rc->privdata);
    free(rc);
}

static void onReplay(redisLink *l, redisReply *reply, void *privdata) {
    replayCall *rc = privdata;

    UNUSED(l);
    if (reply == NULL) {
        replayFinish(rc, "redis link down");
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        replayFinish(rc, reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        replayFinish(rc, "unexpected reply from Redis");
        return;
    }
    rc->replayed += reply->element[0]->integer;
    if (rc->all && reply->element[1]->integer == REPLAY_BATCH) {
        snprintf(rc->id, sizeof(rc->id), "(%s", reply->element[2]->str);
        snprintf(rc->stop, sizeof(rc->stop), "%s", reply->element[3]->str);
        if (replaySend(rc) != 0) replayFinish(rc, "redis link down");
        return;
    }
    replayFinish(rc, NULL);
}

/* Sends the next command of the replay (lua/replay.lua): the one id, or
 * the next batch of REPLAY ALL. Returns scriptSend()'s result. */
static int replaySend(replayCall *rc) {
    char batch[16];
    scriptCmd s;
    int ret = -1;

    if (scriptInit(&s, SCRIPT_REPLAY_LUA, SCRIPT_REPLAY_NUMKEYS,
                   SCRIPT_REPLAY_ARGC) == 0) {
        snprintf(batch, sizeof(batch), "%d", REPLAY_BATCH);
        scriptSet(&s, SCRIPT_REPLAY_DLQ, rc->w->cfg->dead_letter_stream);
        scriptSet(&s, SCRIPT_REPLAY_ONE, rc->all ? "" : rc->id);
        scriptSet(&s, SCRIPT_REPLAY_START, rc->all ? rc->id : "-");
        scriptSet(&s, SCRIPT_REPLAY_COUNT, batch);
        scriptSet(&s, SCRIPT_REPLAY_STOP, rc->stop);
        ret = scriptSend(&s, rc->w->cmd, onReplay, rc);
    }
    scriptFree(&s);
    return ret;
}

/* Replays the dead letter 'id', or all of them when 'id' is NULL, in
 * batches. 'fn' gets the count (or an error) once. Returns -1 when Redis is
 * not reachable (then 'fn' is not called). */
int deadletterReplay(worker *w, const char *id, replayDoneProc *fn,
                     void *privdata) {
    replayCall *rc = calloc(1, sizeof(*rc));

    if (rc == NULL) return -1;
    rc->w = w;
    rc->all = id == NULL;
    snprintf(rc->id, sizeof(rc->id), "%s", id ? id : "-");
    rc->fn = fn;
    rc->privdata = privdata;
    if (replaySend(rc) != 0) {
        free(rc);
        return -1;
    }
    return 0;
}
