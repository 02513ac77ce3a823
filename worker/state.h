/* The Redis operations that move a held entry on, each one script (or one
 * XACK) so that Redis sees it whole: the begin check, the outcomes (done,
 * retry, dead letter, skip) and the touch that keeps held entries from
 * looking idle. They decide nothing about the task: each reports what
 * Redis did through the caller's callback, and logs only its own failures.
 *
 * Ownership: the task (or group) must outlive the call's callback; what a
 * call is given is copied before it returns. A step's callback runs once,
 * later, from the event loop, unless the step returned -1; a touch's runs
 * once for each entry it reports. */

#ifndef CHECKOUT_WORKER_STATE_H
#define CHECKOUT_WORKER_STATE_H

#include "reply.h"
#include "types.h"

/* What a step's script did. */
typedef enum stateOutcome {
    STATE_BEGUN,            /* begin: no done record, still this consumer's
                             * pending entry: deliver it */
    STATE_ALREADY_DONE,     /* begin: a done record exists; acknowledged */
    STATE_RELEASED,         /* begin: no longer pending for this consumer */
    STATE_DELETED,          /* begin: deleted from the stream meanwhile */
    STATE_DONE,             /* finish: acknowledged, done record, state hash
                             * and emitted events written */
    STATE_DONE_MEANWHILE,   /* finish: an earlier attempt had finished it;
                             * acknowledged only */
    STATE_RETRYING,         /* retry: in the retry schedule */
    STATE_DEAD,             /* dead: dead-lettered and acknowledged */
    STATE_SKIPPED,          /* skip: acknowledged */
    STATE_LINK_DOWN,        /* no reply: the link went down; the entry may
                             * or may not have moved on */
    STATE_REFUSED           /* an error reply (out of memory, say): the
                             * entry stays pending */
} stateOutcome;

typedef void stateDoneProc(task *t, stateOutcome outcome);

/* Called by a touch for each held entry that is not this consumer's any
 * more ('deleted' 0), or that was deleted from the stream and so
 * dead-lettered by the touch ('deleted' 1). */
typedef void stateTouchedProc(group *g, const char *id, int deleted);

int stateBegin(task *t, stateDoneProc *fn);
int stateFinish(task *t, const handlerReply *reply, stateDoneProc *fn);
int stateRetry(task *t, stateDoneProc *fn);
int stateDead(task *t, const char *error, stateDoneProc *fn);
int stateSkip(task *t, stateDoneProc *fn);
void stateTouch(group *g, stateTouchedProc *fn);

#endif
