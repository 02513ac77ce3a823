/* checkout-worker handler replies: read a 2xx reply's JSON body in one pass
 * with yajl's callback parser.
 *
 * The body is not built into a tree: members the worker does not know are
 * skipped as they stream by, and each emit's "data" is copied straight into
 * a yajl generator, which writes it back compactly. That keeps string
 * values byte for byte (yajl_tree cuts a string at an escaped NUL) and
 * numbers as written, and it bounds the work on a large reply to one pass.
 *
 * The first member found wrong is the reply's error, but parsing goes on to
 * the end: a body that turns out not to be valid JSON asks for nothing,
 * however wrong its first members were. */

#define _POSIX_C_SOURCE 200809L     /* strncasecmp */

#include "reply.h"
#include "event.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "checkout_contract.h"

#define REPLY_MAX_VERSION 32    /* bytes of an emit's schemaversion */

/* The member whose value comes next, in the reply (depth 1) or in one of
 * its emits (depth 3). The values are bits of replyParser.seen. */
typedef enum member {
    M_OTHER = 0,
    M_STATUS = 1 << 0,
    M_ORDER = 1 << 1,
    M_EMIT = 1 << 2,
    M_TYPE = 1 << 3,
    M_DATA = 1 << 4,
    M_VERSION = 1 << 5
} member;

static const struct {
    const char *name;
    member m;
    int depth;
} members[] = {
    {CHECKOUT_REPLY_STATUS, M_STATUS, 1},
    {CHECKOUT_REPLY_ORDER_ID, M_ORDER, 1},
    {CHECKOUT_REPLY_EMIT, M_EMIT, 1},
    {CHECKOUT_EMIT_TYPE, M_TYPE, 3},
    {CHECKOUT_EMIT_DATA, M_DATA, 3},
    {CHECKOUT_EMIT_SCHEMAVERSION, M_VERSION, 3}
};

/* The outcomes, as a list and as the text of an error: ", a, b" */
#define STATUS_NAME(name, outcome) outcome,
#define STATUS_LISTED(name, outcome) ", " outcome
static const char *statuses[] = {CHECKOUT_OUTCOMES(STATUS_NAME)};
static const char statusList[] = CHECKOUT_OUTCOMES(STATUS_LISTED);

/* What a parser event is: a scalar, or the start of a container. */
typedef enum valueKind {
    V_NULL, V_TRUE, V_FALSE, V_NUMBER, V_STRING, V_MAP, V_ARRAY
} valueKind;

typedef struct replyParser {
    handlerReply *r;
    int depth;              /* containers open around the next value */
    member member;          /* the member whose value comes next */
    int seen;               /* members seen in the reply object */
    int emit_seen;          /* members seen in the current emit */
    int emit_index;         /* position of the current emit in the array */
    int skip_depth;         /* skipping a container opened at this depth
                             * until it closes; -1: not skipping */
    yajl_gen gen;           /* copying an emit's data; NULL: not */
    int gen_depth;          /* depth the data value started at */
    int not_object;         /* the body is not a JSON object */
    int too_deep;           /* nested past REPLY_MAX_DEPTH */
    int oom;
    int bad;                /* 'err' holds the first wrong member */
    char *err;
    size_t errlen;
} replyParser;

#ifdef __GNUC__
static void bad(replyParser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#endif

/* Records what is wrong with the reply, unless something already is. */
static void bad(replyParser *p, const char *fmt, ...) {
    va_list ap;
    int n;

    if (p->bad) return;
    p->bad = 1;
    if (p->errlen == 0) return;
    n = snprintf(p->err, p->errlen, "bad_reply: ");
    if (n < 0 || (size_t)n >= p->errlen) return;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static char *copyString(const unsigned char *s, size_t len) {
    char *copy = malloc(len + 1);

    if (copy == NULL) return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

/* 1 when the 'len' bytes at 's' are 1 to REPLY_MAX_TEXT printable ASCII. */
static int isText(const unsigned char *s, size_t len) {
    size_t i;

    if (len == 0 || len > REPLY_MAX_TEXT) return 0;
    for (i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e) return 0;
    return 1;
}

/* 1 for application/json and the +json types, parameters allowed
 * ("application/json; charset=utf-8"). */
static int isJsonType(const char *ct) {
    size_t len;

    if (ct == NULL) return 0;
    while (*ct == ' ' || *ct == '\t') ct++;
    len = strcspn(ct, ";");
    while (len > 0 && (ct[len - 1] == ' ' || ct[len - 1] == '\t')) len--;
    if (len == 16 && strncasecmp(ct, "application/json", 16) == 0) return 1;
    return len > 5 && memchr(ct, '/', len) != NULL &&
           strncasecmp(ct + len - 5, "+json", 5) == 0;
}

/* Skips the value about to start, if it is a container, to its end. */
static void skipValue(replyParser *p, valueKind kind) {
    if (kind == V_MAP || kind == V_ARRAY) p->skip_depth = p->depth;
}

/* Stores the string value of a member. */
static void setString(replyParser *p, char **dst, const unsigned char *s,
                      size_t len) {
    if ((*dst = copyString(s, len)) == NULL) p->oom = 1;
}

/* Takes the value of a member of the reply object. */
static void replyMember(replyParser *p, valueKind kind,
                        const unsigned char *s, size_t len) {
    handlerReply *r = p->r;
    size_t i;

    switch (p->member) {
    case M_STATUS:
        if (kind != V_STRING) {
            bad(p, "%s is not a string", CHECKOUT_REPLY_STATUS);
            break;
        }
        for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
            if (strlen(statuses[i]) == len &&
                memcmp(statuses[i], s, len) == 0)
                break;
        if (i == sizeof(statuses) / sizeof(statuses[0]))
            bad(p, "%s is not one of%s", CHECKOUT_REPLY_STATUS,
                statusList + 1);
        else
            setString(p, &r->checkout_status, s, len);
        break;
    case M_ORDER:
        if (kind != V_STRING)
            bad(p, "%s is not a string", CHECKOUT_REPLY_ORDER_ID);
        else if (!isText(s, len))
            bad(p, "%s must be 1 to %d printable ASCII characters",
                CHECKOUT_REPLY_ORDER_ID, REPLY_MAX_TEXT);
        else
            setString(p, &r->order_id, s, len);
        break;
    case M_EMIT:
        if (kind != V_ARRAY) {
            bad(p, "%s is not an array", CHECKOUT_REPLY_EMIT);
            break;
        }
        r->emit = calloc(REPLY_MAX_EMIT, sizeof(*r->emit));
        if (r->emit == NULL) p->oom = 1;
        return;     /* the array's elements are the emits */
    default:
        break;
    }
    skipValue(p, kind);
}

/* Takes an element of the emit array. */
static void emitElement(replyParser *p, valueKind kind) {
    p->emit_index++;
    if (p->emit_index >= REPLY_MAX_EMIT) {
        bad(p, "%s has more than %d entries", CHECKOUT_REPLY_EMIT,
            REPLY_MAX_EMIT);
    } else if (kind != V_MAP) {
        bad(p, "%s[%d] is not an object", CHECKOUT_REPLY_EMIT,
            p->emit_index);
    } else {
        p->r->nemit++;
        p->emit_seen = 0;
        return;     /* its members come next */
    }
    skipValue(p, kind);
}

/* Takes the value of a member of an emit object. */
static void emitMember(replyParser *p, valueKind kind,
                       const unsigned char *s, size_t len) {
    replyEmit *e = &p->r->emit[p->r->nemit - 1];
    int i = p->emit_index;

    switch (p->member) {
    case M_TYPE:
        if (kind != V_STRING)
            bad(p, "%s[%d].%s is not a string", CHECKOUT_REPLY_EMIT, i,
                CHECKOUT_EMIT_TYPE);
        else if (!isText(s, len))
            bad(p, "%s[%d].%s must be 1 to %d printable ASCII characters",
                CHECKOUT_REPLY_EMIT, i, CHECKOUT_EMIT_TYPE, REPLY_MAX_TEXT);
        else
            setString(p, &e->type, s, len);
        break;
    case M_DATA:
        /* Copied by the caller, event by event, until the value ends. */
        if ((p->gen = yajl_gen_alloc(NULL)) == NULL) p->oom = 1;
        p->gen_depth = p->depth;
        return;
    case M_VERSION:
        if (kind != V_STRING)
            bad(p, "%s[%d].%s is not a string", CHECKOUT_REPLY_EMIT, i,
                CHECKOUT_EMIT_SCHEMAVERSION);
        else if (len > REPLY_MAX_VERSION ||
                 eventVersionMajor((const char *)s, len) < 0)
            bad(p, "%s[%d].%s must be N or N.M", CHECKOUT_REPLY_EMIT, i,
                CHECKOUT_EMIT_SCHEMAVERSION);
        else
            setString(p, &e->schemaversion, s, len);
        break;
    default:
        break;
    }
    skipValue(p, kind);
}

/* Ends the data value being copied: its text becomes the emit's data. */
static void endData(replyParser *p) {
    replyEmit *e = &p->r->emit[p->r->nemit - 1];
    const unsigned char *buf;
    size_t len;

    if (yajl_gen_get_buf(p->gen, &buf, &len) != yajl_gen_status_ok ||
        (e->data = copyString(buf, len)) == NULL)
        p->oom = 1;
    yajl_gen_free(p->gen);
    p->gen = NULL;
}

static yajl_gen_status genValue(yajl_gen g, valueKind kind,
                                const unsigned char *s, size_t len) {
    switch (kind) {
    case V_NULL: return yajl_gen_null(g);
    case V_TRUE: return yajl_gen_bool(g, 1);
    case V_FALSE: return yajl_gen_bool(g, 0);
    case V_NUMBER: return yajl_gen_number(g, (const char *)s, len);
    case V_STRING: return yajl_gen_string(g, s, len);
    case V_MAP: return yajl_gen_map_open(g);
    case V_ARRAY: return yajl_gen_array_open(g);
    }
    return yajl_gen_invalid_string;
}

/* Every value the parser reports comes here: it is routed by where it is
 * (unless skipped or copied), then copied if it is emit data. Returns 1 to
 * go on, 0 to stop the parse. */
static int onValue(replyParser *p, valueKind kind, const unsigned char *s,
                   size_t len) {
    int container = kind == V_MAP || kind == V_ARRAY;

    if (p->gen == NULL && p->skip_depth < 0) {
        switch (p->depth) {
        case 0:
            if (kind != V_MAP) {
                p->not_object = 1;
                return 0;
            }
            break;
        case 1: replyMember(p, kind, s, len); break;
        case 2: emitElement(p, kind); break;
        case 3: emitMember(p, kind, s, len); break;
        }
        if (p->oom) return 0;
    }
    if (p->gen != NULL) {
        if (genValue(p->gen, kind, s, len) != yajl_gen_status_ok) {
            p->oom = 1;
            return 0;
        }
        if (!container && p->depth == p->gen_depth) endData(p);
        if (p->oom) return 0;
    }
    if (container && ++p->depth > REPLY_MAX_DEPTH) {
        p->too_deep = 1;
        return 0;
    }
    return 1;
}

/* The end of an array or object. */
static int onEnd(replyParser *p, int map) {
    p->depth--;
    if (p->gen != NULL) {
        if ((map ? yajl_gen_map_close(p->gen)
                 : yajl_gen_array_close(p->gen)) != yajl_gen_status_ok) {
            p->oom = 1;
            return 0;
        }
        if (p->depth == p->gen_depth) endData(p);
        return !p->oom;
    }
    if (p->skip_depth >= 0) {
        if (p->depth == p->skip_depth) p->skip_depth = -1;
        return 1;
    }
    if (map && p->depth == 2) {
        /* An emit ends. */
        replyEmit *e = &p->r->emit[p->r->nemit - 1];

        if (e->type == NULL)
            bad(p, "%s[%d] has no %s", CHECKOUT_REPLY_EMIT, p->emit_index,
                CHECKOUT_EMIT_TYPE);
        if (e->data == NULL && (e->data = copyString(
                (const unsigned char *)"{}", 2)) == NULL) {
            p->oom = 1;
            return 0;
        }
    }
    return 1;
}

static int onKey(void *ctx, const unsigned char *key, size_t len) {
    replyParser *p = ctx;
    int *seen = p->depth == 1 ? &p->seen : &p->emit_seen;
    size_t i;

    if (p->gen != NULL) {
        if (yajl_gen_string(p->gen, key, len) == yajl_gen_status_ok)
            return 1;
        p->oom = 1;
        return 0;
    }
    if (p->skip_depth >= 0) return 1;

    p->member = M_OTHER;
    for (i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        if (members[i].depth != p->depth ||
            strlen(members[i].name) != len ||
            memcmp(members[i].name, key, len) != 0)
            continue;
        if (*seen & members[i].m) {
            if (p->depth == 1)
                bad(p, "duplicate %s", members[i].name);
            else
                bad(p, "duplicate %s[%d].%s", CHECKOUT_REPLY_EMIT,
                    p->emit_index, members[i].name);
        } else {
            *seen |= members[i].m;
            p->member = members[i].m;
        }
        break;
    }
    return 1;
}

static int onNull(void *ctx) {
    return onValue(ctx, V_NULL, NULL, 0);
}

static int onBool(void *ctx, int value) {
    return onValue(ctx, value ? V_TRUE : V_FALSE, NULL, 0);
}

static int onNumber(void *ctx, const char *s, size_t len) {
    return onValue(ctx, V_NUMBER, (const unsigned char *)s, len);
}

static int onString(void *ctx, const unsigned char *s, size_t len) {
    return onValue(ctx, V_STRING, s, len);
}

static int onStartMap(void *ctx) {
    return onValue(ctx, V_MAP, NULL, 0);
}

static int onEndMap(void *ctx) {
    return onEnd(ctx, 1);
}

static int onStartArray(void *ctx) {
    return onValue(ctx, V_ARRAY, NULL, 0);
}

static int onEndArray(void *ctx) {
    return onEnd(ctx, 0);
}

static const yajl_callbacks callbacks = {
    onNull, onBool, NULL, NULL, onNumber, onString,
    onStartMap, onKey, onEndMap, onStartArray, onEndArray
};

/* Reads the 2xx reply with 'content_type' (NULL if none) and the 'len'
 * bytes of 'body' into 'r'. Returns REPLY_OK, with 'r' holding what the
 * reply asks for (maybe nothing), or REPLY_BAD with 'r' empty and the reason
 * in 'err' ("bad_reply: ...", errlen bytes at most). Either way the caller
 * calls replyFree(). */
int replyParse(handlerReply *r, const char *content_type, const char *body,
               size_t len, char *err, size_t errlen) {
    replyParser p;
    yajl_handle h;
    yajl_status st = yajl_status_error;

    memset(r, 0, sizeof(*r));
    if (errlen > 0) err[0] = '\0';
    if (!isJsonType(content_type) || len == 0) return REPLY_OK;

    memset(&p, 0, sizeof(p));
    p.r = r;
    p.emit_index = -1;
    p.skip_depth = -1;
    p.err = err;
    p.errlen = errlen;
    if ((h = yajl_alloc(&callbacks, NULL, &p)) == NULL) {
        p.oom = 1;
    } else {
        st = yajl_parse(h, (const unsigned char *)body, len);
        if (st == yajl_status_ok) st = yajl_complete_parse(h);
        yajl_free(h);
    }
    if (p.gen != NULL) yajl_gen_free(p.gen);

    if (p.oom || p.too_deep) {
        replyFree(r);
        p.bad = 0;
        bad(&p, p.oom ? "out of memory" : "nested deeper than %d levels",
            REPLY_MAX_DEPTH);
        return REPLY_BAD;
    }
    if (p.not_object || st != yajl_status_ok) {
        /* Not a JSON object after all: nothing to apply, nothing wrong. */
        replyFree(r);
        if (errlen > 0) err[0] = '\0';
        return REPLY_OK;
    }
    if (p.bad) {
        replyFree(r);
        return REPLY_BAD;
    }
    return REPLY_OK;
}

/* Frees what 'r' holds and empties it. */
void replyFree(handlerReply *r) {
    int i;

    for (i = 0; i < r->nemit; i++) {
        free(r->emit[i].type);
        free(r->emit[i].data);
        free(r->emit[i].schemaversion);
    }
    free(r->emit);
    free(r->checkout_status);
    free(r->order_id);
    memset(r, 0, sizeof(*r));
}
