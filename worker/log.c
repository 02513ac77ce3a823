/* checkout-worker log: logfmt lines built in a static buffer and written
 * with one write(2) each. See log.h for the line format.
 *
 * A line never outgrows its buffer: the last bytes are kept free for the
 * "..." that marks a cut value, its closing quote and the '\n', so that a
 * cut line is still one well-formed logfmt line. */

#define _POSIX_C_SOURCE 200809L     /* O_CLOEXEC, strdup */

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Kept free at the end of the line: "...", '"' and '\n'. */
#define LOG_RESERVE 5
#define LOG_LIMIT (LOG_MAX_LINE - LOG_RESERVE)

static struct {
    int fd;                 /* STDERR_FILENO, or the file's descriptor */
    char *path;             /* the file's path; NULL: stderr */
    char line[LOG_MAX_LINE];
    size_t len;             /* bytes of 'line' in use */
    int started;            /* logStart() called, logEnd() not yet */
    int full;               /* the line was cut: later pairs are dropped */
} logger = {STDERR_FILENO, NULL, {0}, 0, 0, 0};

static const char *levelNames[] = {"info", "warn", "error"};

/* Opens 'path' for appending, creating it if needed. Returns the descriptor
 * or -1 with errno set. Close-on-exec: no child inherits the log. */
static int openFile(const char *path) {
    int fd;

    do {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    } while (fd == -1 && errno == EINTR);
    return fd;
}

/* Sends the log to 'path': "stderr", or a file opened for appending. A file
 * already open is closed once the new destination is in place. Returns 0,
 * or -1 with "cannot open PATH: reason" in 'err' (the log is unchanged). */
int logOpen(const char *path, char *err, size_t errlen) {
    char *copy = NULL;
    int fd = STDERR_FILENO;

    if (strcmp(path, "stderr") != 0) {
        if ((copy = strdup(path)) == NULL) {
            snprintf(err, errlen, "cannot open %s: out of memory", path);
            return -1;
        }
        if ((fd = openFile(path)) == -1) {
            snprintf(err, errlen, "cannot open %s: %s", path,
                     strerror(errno));
            free(copy);
            return -1;
        }
    }
    logClose();
    logger.fd = fd;
    logger.path = copy;
    return 0;
}

/* Opens the log file again under its path, for SIGHUP after a rotation
 * moved it away. Returns 0 (also when the log is stderr), or -1 with errno
 * set when the file cannot be opened: the log then stays on the old file,
 * since writing to a moved file loses nothing. */
int logReopen(void) {
    int fd;

    if (logger.path == NULL) return 0;
    if ((fd = openFile(logger.path)) == -1) return -1;
    close(logger.fd);
    logger.fd = fd;
    return 0;
}

/* Closes the log file, if any; later lines go to stderr. */
void logClose(void) {
    if (logger.path != NULL) {
        close(logger.fd);
        free(logger.path);
        logger.path = NULL;
    }
    logger.fd = STDERR_FILENO;
}

/* Appends 'len' bytes to the line when they fit within LOG_LIMIT. Returns 0,
 * or -1 when they do not: the caller then cuts the line with logCut(). */
static int append(const char *s, size_t len) {
    if (len > LOG_LIMIT - logger.len) return -1;
    memcpy(logger.line + logger.len, s, len);
    logger.len += len;
    return 0;
}

/* Marks the line cut: "..." (and the closing quote of a quoted value) go
 * into the reserved bytes, and nothing more is added to the line. */
static void logCut(int quoted) {
    memcpy(logger.line + logger.len, "...", 3);
    logger.len += 3;
    if (quoted) logger.line[logger.len++] = '"';
    logger.full = 1;
}

/* Begins a line with its time stamp and level. A line begun and not ended
 * is dropped. */
void logStart(logLevel level) {
    char now[40], buf[64];

    formatTime(now, sizeof(now), nowMs());
    snprintf(buf, sizeof(buf), "ts=%s level=%s", now, levelNames[level]);
    logger.len = 0;
    logger.full = 0;
    logger.started = 1;
    append(buf, strlen(buf));
}

/* 1 when the 'len' bytes of 'value' must be quoted to stay one token. */
static int needsQuotes(const unsigned char *value, size_t len) {
    size_t i;

    if (len == 0) return 1;
    for (i = 0; i < len; i++)
        if (value[i] <= ' ' || value[i] > '~' || value[i] == '=' ||
            value[i] == '"')
            return 1;
    return 0;
}

/* Adds " key=value" with the 'len' bytes of 'value', which may hold any
 * byte, NUL included. */
void logStrLen(const char *key, const char *value, size_t len) {
    const unsigned char *v = (const unsigned char *)value;
    int quoted;
    size_t i;

    if (!logger.started || logger.full) return;
    quoted = needsQuotes(v, len);
    if (append(" ", 1) == -1 || append(key, strlen(key)) == -1 ||
        append(quoted ? "=\"" : "=", quoted ? 2 : 1) == -1) {
        logCut(0);
        return;
    }
    for (i = 0; i < len; i++) {
        char esc[5];
        size_t n = 2;

        esc[0] = '\\';
        switch (v[i]) {
        case '"': esc[1] = '"'; break;
        case '\\':
            if (quoted) esc[1] = '\\';
            else n = 1;     /* unquoted, a backslash is just a byte */
            break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            if (v[i] < ' ' || v[i] > '~') {
                snprintf(esc, sizeof(esc), "\\x%02x", v[i]);
                n = 4;
            } else {
                esc[0] = (char)v[i];
                n = 1;
            }
        }
        if (append(esc, n) == -1) {
            logCut(quoted);
            return;
        }
    }
    /* When only the closing quote does not fit, the line is still cut:
     * there is no room for the pairs after it. */
    if (quoted && append("\"", 1) == -1) logCut(1);
}

void logStr(const char *key, const char *value) {
    logStrLen(key, value, strlen(value));
}

void logInt(const char *key, long long value) {
    char buf[32];

    snprintf(buf, sizeof(buf), "%lld", value);
    logStrLen(key, buf, strlen(buf));
}

/* Ends the line and writes it. A write that fails is given up: there is
 * nowhere left to report it. */
void logEnd(void) {
    size_t off = 0;

    if (!logger.started) return;
    logger.line[logger.len++] = '\n';
    while (off < logger.len) {
        ssize_t n = write(logger.fd, logger.line + off, logger.len - off);

        if (n == -1 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    logger.started = 0;
    logger.len = 0;
}

/* Writes a line with just a message: "ts=... level=... msg=\"...\"". */
void logMsg(logLevel level, const char *fmt, ...) {
    char msg[LOG_MAX_LINE];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(msg)) n = (int)sizeof(msg) - 1;
    logStart(level);
    logStrLen("msg", msg, (size_t)n);
    logEnd();
}
