/* checkout-worker log: one logfmt line per record,
 *
 *   ts=2026-11-26T21:00:00.123Z level=info group=receipt ce_id=chk_x ...
 *
 * A line is built with logStart(), then logStr()/logStrLen()/logInt() for
 * each key=value pair, then logEnd(), which writes it with one write(2) so
 * that lines never interleave with another process appending to the same
 * file. logMsg() is the short form for a line with just a message.
 *
 * Values are quoted ("...") when empty or when they hold spaces, '=', '"' or
 * bytes outside printable ASCII; inside quotes, '"' and '\' are escaped,
 * and so are \n \r \t and every other such byte as \xNN. A line longer than
 * LOG_MAX_LINE is cut, the cut value ending in "...".
 *
 * Single-threaded: one line is built at a time. Before logOpen() (and after
 * logClose()) lines go to stderr. */

#ifndef CHECKOUT_WORKER_LOG_H
#define CHECKOUT_WORKER_LOG_H

#include <stddef.h>

#define LOG_MAX_LINE 8192       /* bytes of a line, the '\n' included */

typedef enum logLevel {
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR
} logLevel;

int logOpen(const char *path, char *err, size_t errlen);
int logReopen(void);
void logClose(void);

void logStart(logLevel level);
void logStr(const char *key, const char *value);
void logStrLen(const char *key, const char *value, size_t len);
void logInt(const char *key, long long value);
void logEnd(void);

#ifdef __GNUC__
void logMsg(logLevel level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#else
void logMsg(logLevel level, const char *fmt, ...);
#endif

#endif
