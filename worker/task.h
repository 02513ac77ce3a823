/* The tasks of a group: one per stream entry it holds (read, reclaimed or
 * due again) and has not let go. task.c is their one owner: it creates and
 * frees them, keeps them in order, is the only writer of a task's state,
 * counts what is in flight and the group's stats, starts and delivers each
 * attempt, and turns what the state scripts report into the task's next
 * step and one log line per outcome.
 *
 * Ownership: the tasks are task.c's alone; callers name entries by id, and
 * the Redis replies they hand in are copied from, never kept. Whenever a
 * task settles out of flight, task.c calls the group's 'settled' proc
 * (types.h), which may read more or stop the worker but must not free the
 * group. */

#ifndef CHECKOUT_WORKER_TASK_H
#define CHECKOUT_WORKER_TASK_H

#include "types.h"

void taskAdopt(group *g, redisReply *entry, long long attempt);
void taskDispatch(group *g);
int taskRoom(const group *g);
int taskHeldDue(const group *g);
void taskForgetRetries(group *g, long long stale_ms);
void taskLost(group *g, const char *id);
void taskDeleted(group *g, const char *id, const char *via);
void taskFreeAll(group *g);

#endif
