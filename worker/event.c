/* checkout-worker events: check a stream entry's fields against the
 * contract's rules before any delivery (docs/contract.md, "Event
 * validation").
 *
 * The CloudEvent attributes become HTTP headers, and the id and subject
 * also become parts of Redis key names, so they are held to printable
 * ASCII: a CR or LF would split a header, and a byte outside ASCII has no
 * agreed meaning in either place. The id and the subject may not hold
 * spaces either. */

#define _POSIX_C_SOURCE 200809L

#include "event.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "checkout_contract.h"

/* The fields read from an entry, in the order they are checked. */
enum {
    F_SPECVERSION, F_ID, F_TYPE, F_SOURCE, F_TIME, F_SUBJECT,
    F_SCHEMAVERSION, F_CONTENT_TYPE, F_DATA, F_REPLAY_GROUP, F_COUNT
};

/* How a field's value is checked. */
typedef enum fieldKind {
    K_HEADER,           /* printable ASCII, spaces allowed */
    K_TOKEN,            /* printable ASCII, no spaces */
    K_DATA,             /* JSON text */
    K_ANY               /* not checked */
} fieldKind;

static const struct {
    const char *name;
    fieldKind kind;
    int required;
} fieldInfo[F_COUNT] = {
    [F_SPECVERSION]   = {CHECKOUT_CE_SPECVERSION, K_HEADER, 1},
    [F_ID]            = {CHECKOUT_CE_ID, K_TOKEN, 1},
    [F_TYPE]          = {CHECKOUT_CE_TYPE, K_HEADER, 1},
    [F_SOURCE]        = {CHECKOUT_CE_SOURCE, K_HEADER, 1},
    [F_TIME]          = {CHECKOUT_CE_TIME, K_HEADER, 0},
    [F_SUBJECT]       = {CHECKOUT_CE_SUBJECT, K_TOKEN, 1},
    [F_SCHEMAVERSION] = {CHECKOUT_CE_SCHEMAVERSION, K_HEADER, 1},
    [F_CONTENT_TYPE]  = {CHECKOUT_EVENT_CONTENT_TYPE, K_HEADER, 0},
    [F_DATA]          = {CHECKOUT_EVENT_DATA, K_DATA, 1},
    [F_REPLAY_GROUP]  = {CHECKOUT_EVENT_REPLAY_GROUP, K_ANY, 0},
};

/* The state of the JSON check of data: how deep the parser is. */
typedef struct jsonDepth {
    int depth;
    int too_deep;
} jsonDepth;

#ifdef __GNUC__
static int eventError(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#endif

/* Writes the message into 'err' and returns 'rc'. */
static int eventError(char *err, size_t errlen, int rc, const char *fmt,
                      ...) {
    va_list ap;

    if (errlen == 0) return rc;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static int isDigit(char c) {
    return c >= '0' && c <= '9';
}

/* Returns the major version of the schema version 's' of 'len' bytes,
 * "N" or "N.M" (decimal digits), or -1 when 's' is neither. A major too
 * large for an int is INT_MAX, which no configured version matches. */
int eventVersionMajor(const char *s, size_t len) {
    size_t i = 0;
    int major = 0;

    for (; i < len && isDigit(s[i]); i++) {
        if (major <= (INT_MAX - 9) / 10)
            major = major * 10 + (s[i] - '0');
        else
            major = INT_MAX;
    }
    if (i == 0) return -1;
    if (i < len) {
        size_t minor;

        if (s[i] != '.') return -1;
        minor = ++i;
        while (i < len && isDigit(s[i])) i++;
        if (i == minor || i < len) return -1;
    }
    return major;
}

/* Reads the 'n' digits at 's' into '*v'. Returns 0, or -1 when one of them
 * is not a digit. */
static int readDigits(const char *s, int n, int *v) {
    int i;

    *v = 0;
    for (i = 0; i < n; i++) {
        if (!isDigit(s[i])) return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

/* 1 when the 'len' bytes at 's' are an RFC 3339 date-time:
 * 2026-11-26T21:00:00[.123](Z|+01:00|-01:00). Day 31 is not checked against
 * the month: the time is passed on, not computed with. */
static int isRfc3339(const char *s, size_t len) {
    int year, month, day, hour, min, sec, oh, om;
    size_t i = 19;

    if (len < 20 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
        return 0;
    if (readDigits(s, 4, &year) || readDigits(s + 5, 2, &month) ||
        readDigits(s + 8, 2, &day) || readDigits(s + 11, 2, &hour) ||
        readDigits(s + 14, 2, &min) || readDigits(s + 17, 2, &sec))
        return 0;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
        min > 59 || sec > 60)
        return 0;
    if (s[i] == '.') {
        size_t start = ++i;

        while (i < len && isDigit(s[i])) i++;
        if (i == start) return 0;
    }
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) return i + 1 == len;
    if (len - i != 6 || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':' ||
        readDigits(s + i + 1, 2, &oh) || readDigits(s + i + 4, 2, &om))
        return 0;
    return oh <= 23 && om <= 59;
}

/* Returns 0 when the 'len' bytes at 's' are UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or -1. */
static int checkUtf8(const unsigned char *s, size_t len) {
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i++], lo = 0x80, hi = 0xbf;
        int more;

        if (c < 0x80) continue;
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            if (c == 0xe0) lo = 0xa0;           /* overlong */
            if (c == 0xed) hi = 0x9f;           /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            if (c == 0xf0) lo = 0x90;           /* overlong */
            if (c == 0xf4) hi = 0x8f;           /* past U+10FFFF */
        } else {
            return -1;
        }
        if (len - i < (size_t)more || s[i] < lo || s[i] > hi) return -1;
        for (i++, more--; more > 0; i++, more--)
            if (s[i] < 0x80 || s[i] > 0xbf) return -1;
    }
    return 0;
}

static int jsonOpen(void *ctx) {
    jsonDepth *j = ctx;

    if (++j->depth > EVENT_MAX_DEPTH) {
        j->too_deep = 1;
        return 0;
    }
    return 1;
}

static int jsonClose(void *ctx) {
    ((jsonDepth *)ctx)->depth--;
    return 1;
}

static const yajl_callbacks depthCallbacks = {
    NULL, NULL, NULL, NULL, NULL, NULL,
    jsonOpen, NULL, jsonClose, jsonOpen, jsonClose
};

/* Checks that the 'len' bytes at 'data' are one JSON value of any type,
 * UTF-8, nested at most EVENT_MAX_DEPTH deep. Returns EVENT_OK, or
 * EVENT_MALFORMED with the reason in 'err'. */
static int checkData(const char *data, size_t len, char *err,
                     size_t errlen) {
    jsonDepth j = {0, 0};
    yajl_handle h;
    yajl_status st;

    if (checkUtf8((const unsigned char *)data, len) != 0)
        return eventError(err, errlen, EVENT_MALFORMED,
                          "malformed_event: data is not valid UTF-8");
    if ((h = yajl_alloc(&depthCallbacks, NULL, &j)) == NULL)
        return eventError(err, errlen, EVENT_MALFORMED,
                          "malformed_event: out of memory");
    st = yajl_parse(h, (const unsigned char *)data, len);
    if (st == yajl_status_ok) st = yajl_complete_parse(h);
    yajl_free(h);
    if (j.too_deep)
        return eventError(err, errlen, EVENT_MALFORMED,
                          "malformed_event: data is nested deeper than %d "
                          "levels", EVENT_MAX_DEPTH);
    if (st != yajl_status_ok)
        return eventError(err, errlen, EVENT_MALFORMED,
                          "malformed_event: data is not valid JSON");
    return EVENT_OK;
}

/* Checks the value of the header field 'f'. Returns EVENT_OK, or
 * EVENT_MALFORMED with the reason in 'err'. */
static int checkHeader(int f, const char *v, size_t len, char *err,
                       size_t errlen) {
    const char *name = fieldInfo[f].name;
    unsigned char lowest = fieldInfo[f].kind == K_TOKEN ? 0x21 : 0x20;
    size_t i;

    if (len > EVENT_MAX_VALUE)
        return eventError(err, errlen, EVENT_MALFORMED,
                          "malformed_event: %s longer than %d bytes", name,
                          EVENT_MAX_VALUE);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];

        if (c < lowest || c > 0x7e)
            return eventError(err, errlen, EVENT_MALFORMED,
                              "malformed_event: bad byte 0x%02x in %s", c,
                              name);
    }
    if (f == F_SPECVERSION &&
        (len != sizeof(CHECKOUT_CE_SPECVERSION_VALUE) - 1 ||
         memcmp(v, CHECKOUT_CE_SPECVERSION_VALUE, len) != 0))
        return eventError(err, errlen, EVENT_MALFORMED,
                          "malformed_event: %s must be %s", name,
                          CHECKOUT_CE_SPECVERSION_VALUE);
    if (f == F_TIME && !isRfc3339(v, len))
        return eventError(err, errlen, EVENT_MALFORMED,
                          "malformed_event: %s is not an RFC 3339 time",
                          name);
    if (f == F_SCHEMAVERSION && eventVersionMajor(v, len) < 0)
        return eventError(err, errlen, EVENT_MALFORMED,
                          "malformed_event: %s must be N or N.M", name);
    return EVENT_OK;
}

/* Reads the 'npairs' field/value pairs of a stream entry: 'fields' holds
 * 2 * npairs NUL-terminated strings, field names at even indexes, and
 * 'lens' their lengths (values may hold NUL bytes, which the checks
 * reject). 'versions' lists the 'nversions' schema majors accepted.
 *
 * Fills 'ev' with pointers into 'fields' even on error, so that the caller
 * can log what the entry holds; absent fields are NULL, except content_type,
 * which defaults to "application/json". Returns EVENT_OK, EVENT_MALFORMED
 * or EVENT_UNSUPPORTED, with the reason in 'err' (errlen bytes at most). An
 * entry with an odd number of strings cannot be given here: the caller
 * treats it as malformed. */
int eventParse(streamEvent *ev, char **fields, const size_t *lens,
               size_t npairs, const int *versions, int nversions, char *err,
               size_t errlen) {
    const char *v[F_COUNT] = {NULL};
    size_t len[F_COUNT] = {0}, i;
    int f, rc;

    memset(ev, 0, sizeof(*ev));
    if (errlen > 0) err[0] = '\0';

    for (i = 0; i < npairs; i++) {
        const char *name = fields[2 * i];
        size_t namelen = lens[2 * i];

        for (f = 0; f < F_COUNT; f++)
            if (strlen(fieldInfo[f].name) == namelen &&
                memcmp(fieldInfo[f].name, name, namelen) == 0)
                break;
        if (f == F_COUNT) continue;     /* not ours: ignored */
        if (v[f] != NULL)
            return eventError(err, errlen, EVENT_MALFORMED,
                              "malformed_event: duplicate field %s",
                              fieldInfo[f].name);
        v[f] = fields[2 * i + 1];
        len[f] = lens[2 * i + 1];
    }

    ev->specversion = v[F_SPECVERSION];
    ev->id = v[F_ID];
    ev->type = v[F_TYPE];
    ev->source = v[F_SOURCE];
    ev->time = v[F_TIME];
    ev->subject = v[F_SUBJECT];
    ev->schemaversion = v[F_SCHEMAVERSION];
    ev->content_type = v[F_CONTENT_TYPE] ? v[F_CONTENT_TYPE]
                                         : "application/json";
    ev->data = v[F_DATA];
    ev->datalen = len[F_DATA];
    ev->replay_group = v[F_REPLAY_GROUP];

    for (f = 0; f < F_COUNT; f++) {
        const char *name = fieldInfo[f].name;

        if (fieldInfo[f].kind == K_ANY) continue;
        if (v[f] == NULL) {
            if (!fieldInfo[f].required) continue;
            return eventError(err, errlen, EVENT_MALFORMED,
                              "malformed_event: missing %s", name);
        }
        if (len[f] == 0)
            return eventError(err, errlen, EVENT_MALFORMED,
                              "malformed_event: empty %s", name);
        rc = fieldInfo[f].kind == K_DATA
                 ? checkData(v[f], len[f], err, errlen)
                 : checkHeader(f, v[f], len[f], err, errlen);
        if (rc != EVENT_OK) return rc;
    }

    ev->major = eventVersionMajor(ev->schemaversion,
                                  len[F_SCHEMAVERSION]);
    for (f = 0; f < nversions; f++)
        if (versions[f] == ev->major) return EVENT_OK;
    return eventError(err, errlen, EVENT_UNSUPPORTED,
                      "unsupported_schema_version: %s", ev->schemaversion);
}
