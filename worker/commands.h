/* The worker's admin commands, as a table for adminListen() (admin.h):
 * PING, AUTH, INFO, PENDING, DLQ, REPLAY, PAUSE, RESUME, SHUTDOWN, HELP.
 * Their privdata is the worker, which must outlive the admin server. */

#ifndef CHECKOUT_WORKER_COMMANDS_H
#define CHECKOUT_WORKER_COMMANDS_H

#include "admin.h"

extern const adminCommand workerCommands[];

#endif
