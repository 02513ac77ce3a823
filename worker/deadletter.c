/* Replaying dead letters: an entry of the dead-letter stream goes back to
 * the stream it came from as a new entry (so with a fresh delivery count),
 * marked replay_group <group> so that only the group it died in handles it
 * again, and the checkout's task field is set back to pending.
 *
 * A dead letter is the original entry's fields followed by the worker's own
 * seven (group, stream, error, attempts, original_id, failed_at, consumer);
 * one that has no original fields (deleted_before_delivery) cannot be
 * replayed and stays. The script names the stream and the state hash from
 * the dead letter's fields: fine on a single Redis, not on a cluster. */

#define _POSIX_C_SOURCE 200809L

#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define REPLAY_BATCH 100

/* KEYS: the dead-letter stream. ARGV: an id, or '' for a batch of at
 * most ARGV[3] entries from the exclusive start ARGV[2] to the end ARGV[4]
 * ('' on the first batch: the newest dead letter now, so that letters
 * added while REPLAY ALL runs are not chased).
 * Returns {replayed, entries looked at, last id looked at, end}. */
static const char replayScript[] =
    "local entries "
    "local stop = ARGV[4] "
    "if ARGV[1] ~= '' then "
    "  entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) "
    "else "
    "  if stop == '' then "
    "    local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', "
    "      'COUNT', 1) "
    "    if #newest == 0 then return {0, 0, '', ''} end "
    "    stop = newest[1][1] "
    "  end "
    "  entries = redis.call('XRANGE', KEYS[1], ARGV[2], stop, "
    "    'COUNT', ARGV[3]) "
    "end "
    "local n, last = 0, '' "
    "for _, e in ipairs(entries) do "
    "  local f, nf = e[2], #e[2] "
    "  last = e[1] "
    "  if nf > 14 and f[nf - 13] == 'group' and f[nf - 11] == 'stream' then "
    "    local group, stream, subject = f[nf - 12], f[nf - 10], nil "
    "    local orig = {} "
    "    for i = 1, nf - 14, 2 do "
    "      if f[i] ~= 'replay_group' then "
    "        orig[#orig + 1] = f[i] "
    "        orig[#orig + 1] = f[i + 1] "
    "      end "
    "      if f[i] == 'ce_subject' then subject = f[i + 1] end "
    "    end "
    "    orig[#orig + 1] = 'replay_group' "
    "    orig[#orig + 1] = group "
    "    redis.call('XADD', stream, '*', unpack(orig)) "
    "    redis.call('XDEL', KEYS[1], e[1]) "
    "    if subject then "
    "      local k = 'checkout:' .. subject "
    "      if redis.call('EXISTS', k) == 1 then "
    "        redis.call('HSET', k, group, 'pending') "
    "      end "
    "    end "
    "    n = n + 1 "
    "  end "
    "end "
    "return {n, #entries, last, stop}";

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

static int replaySend(replayCall *rc) {
    char batch[16];
    const char *argv[8];

    snprintf(batch, sizeof(batch), "%d", REPLAY_BATCH);
    argv[0] = "EVAL";
    argv[1] = replayScript;
    argv[2] = "1";
    argv[3] = rc->w->cfg->dead_letter_stream;
    argv[4] = rc->all ? "" : rc->id;
    argv[5] = rc->all ? rc->id : "-";
    argv[6] = batch;
    argv[7] = rc->stop;
    return linkCommandStrings(rc->w->cmd, onReplay, rc, 8, argv);
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
