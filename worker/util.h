/* checkout-worker utilities that every layer may use: the two clocks, the
 * RFC 3339 time the worker writes (log lines, dead letters, emitted
 * events), and UNUSED() for a callback's parameters that its signature
 * imposes. They hold no state and hand out nothing to free. */

#ifndef CHECKOUT_WORKER_UTIL_H
#define CHECKOUT_WORKER_UTIL_H

#include <stddef.h>

#define UNUSED(v) ((void)(v))

long long nowMs(void);
long long monotonicMs(void);
void formatTime(char *buf, size_t size, long long ms);

#endif
