/* A group's consumer: the group in Redis (XGROUP CREATE, again when Redis
 * comes back without it), its own reader link with XREADGROUP, and the
 * kick that has the group take on what it has room for. It sets a group up
 * and tears it down; the entries it reads go to task.c.
 *
 * Ownership: the caller owns the group struct (the worker's array) and
 * 'cfg', which must outlive it; consumerInit() fills it in and
 * consumerFree() releases what it holds: its link, its timers (reclaim.c)
 * and its tasks (task.c). */

#ifndef CHECKOUT_WORKER_CONSUMER_H
#define CHECKOUT_WORKER_CONSUMER_H

#include "types.h"

int consumerInit(worker *w, group *g, groupConfig *cfg,
                 groupSettledProc *settled);
void consumerRun(group *g);
void consumerKick(group *g);
void consumerLinkUp(worker *w);
void consumerStopReading(group *g);
void consumerFree(group *g);

#endif
