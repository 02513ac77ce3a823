/* Replaying dead letters: an entry of the dead-letter stream goes back to
 * the stream it came from as a new entry, for the group it died in.
 *
 * Ownership: the worker and 'privdata' must outlive the replay; the id is
 * copied. The callback runs once, later, from the event loop. */

#ifndef CHECKOUT_WORKER_DEADLETTER_H
#define CHECKOUT_WORKER_DEADLETTER_H

#include "types.h"

/* The replay's end: how many were replayed, and an error or NULL. */
typedef void replayDoneProc(long long replayed, const char *error,
                            void *privdata);

int deadletterReplay(worker *w, const char *id, replayDoneProc *fn,
                     void *privdata);

#endif
