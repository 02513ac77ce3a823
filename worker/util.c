/* Clocks and the worker's time format. */

#define _POSIX_C_SOURCE 200809L     /* clock_gettime, gmtime_r */

#include "util.h"

#include <stdio.h>
#include <time.h>

/* Returns the wall clock in ms since the epoch: what Redis and the
 * receivers see (due times, stream ids, failed_at). */
long long nowMs(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Returns a clock in ms that never jumps: for durations and timeouts. */
long long monotonicMs(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes 'ms' (since the epoch) into 'buf' of 'size' bytes as RFC 3339,
 * UTC, with milliseconds: 2026-11-26T21:00:00.123Z. */
void formatTime(char *buf, size_t size, long long ms) {
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}
