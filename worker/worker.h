/* The running worker: it sets up and frees the worker struct (types.h) with
 * everything it points to, its links, groups, deliverer and admin port;
 * runs the event loop; and stops on a signal or SHUTDOWN, once what is in
 * flight has settled or shutdown-timeout has passed.
 *
 * Ownership: the caller holds the worker struct; workerInit() takes over
 * 'cfg' (configFree()d by workerFree()), keeps 'file' and 'commands',
 * which must outlive the worker, and workerFree() releases the rest, also
 * after a failed workerInit(). */

#ifndef CHECKOUT_WORKER_WORKER_H
#define CHECKOUT_WORKER_WORKER_H

#include "admin.h"
#include "config.h"
#include "types.h"

#define WORKER_VERSION "0.1.0"

int workerInit(worker *w, const char *file, workerConfig *cfg,
               const adminCommand *commands);
int workerRun(worker *w);
void workerStop(worker *w, const char *why);
void workerFree(worker *w);
group *workerGroup(worker *w, const char *name);

#endif
