/* Getting entries back from Redis, and keeping those held: a group's due
 * retries (from its durable schedule), entries idle longer than min-idle
 * (a crashed or hung consumer's, taken over with XAUTOCLAIM), the touch of
 * held entries on a timer, and retention of the streams (XTRIM MINID below
 * what any group still needs). The group's three timers are here, behind
 * reclaimStart() and reclaimStop().
 *
 * Ownership: a group's timers are created by reclaimInit() and freed by
 * reclaimFree(); the entries got back go to task.c. */

#ifndef CHECKOUT_WORKER_RECLAIM_H
#define CHECKOUT_WORKER_RECLAIM_H

#include "types.h"

int reclaimInit(group *g);
void reclaimStart(group *g);
void reclaimStop(group *g);
void reclaimFree(group *g);
void reclaimDue(group *g);
void reclaimIdle(group *g);
void retentionRun(worker *w);

#endif
