/* checkout-worker configuration file: parse, validate, and say what is wrong
 * with the file name and line number ("worker.conf:12: unknown directive
 * \"concurency\"").
 *
 * A line is split into arguments the way redis.conf lines are (see
 * splitLine()). Every directive takes exactly one argument except
 * schema-versions (one or more); each may appear once per scope (the global
 * part, or one group section), so that a forgotten "group" line is an
 * error rather than a silent override of the previous group's settings. */

#define _POSIX_C_SOURCE 200809L     /* strcasecmp, strncasecmp */

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "checkout_contract.h"

#define CONFIG_MAX_FILE (1024 * 1024)   /* no config file comes near it */
#define CONFIG_MAX_DURATION_MS (24LL * 3600 * 1000)
#define CONFIG_MAX_KEEP_MS (365LL * 24 * 3600 * 1000) /* done-ttl, retention */
#define CONFIG_MAX_TYPE 128     /* bytes of an event type name */
#define CONFIG_MAX_GROUP_NAME 64
#define CONFIG_MAX_SCHEMA_VERSION 65535
#define CONFIG_REPR_MAX 80      /* bytes of an argument shown in a message */
#define CONFIG_REPR_SIZE (CONFIG_REPR_MAX * 4 + 8)

/* Every directive; the index into directives[] and configParser.seen. */
enum {
    D_REDIS, D_REDIS_PASSWORD, D_REDIS_DB, D_CONSUMER_NAME, D_ADMIN,
    D_ADMIN_PASSWORD, D_DEAD_LETTER_STREAM, D_LOG, D_SHUTDOWN_TIMEOUT,
    D_DONE_TTL, D_RETENTION, D_GROUP, D_STREAM, D_HANDLER, D_URL, D_TIMEOUT,
    D_CONCURRENCY,
    D_MAX_ATTEMPTS, D_BACKOFF_BASE, D_BACKOFF_CAP, D_MIN_IDLE,
    D_SCHEMA_VERSIONS, D_TYPES, D_COUNT
};

/* What a directive's argument is, and so how it is checked and stored. */
typedef enum argType {
    ARG_STRING,         /* char *, not empty */
    ARG_INT,            /* int in [min, max] */
    ARG_DURATION,       /* long long milliseconds in [min, max] */
    ARG_ADDR,           /* configAddr: host:port */
    ARG_ADDR_UNIX,      /* configAddr: host:port or unix:/path */
    ARG_URL,            /* char *: http:// or https:// URL */
    ARG_HANDLER,        /* handlerType */
    ARG_VERSIONS,       /* the group's schema versions: 1+ arguments */
    ARG_TYPES,          /* the group's event types: 1+ arguments */
    ARG_GROUP           /* starts a group section */
} argType;

typedef struct directive {
    const char *name;
    int in_group;       /* 1: belongs to a group section; 0: global */
    argType type;
    size_t offset;      /* of the field, in groupConfig or workerConfig
                         * (0 for ARG_GROUP, ARG_VERSIONS and ARG_TYPES:
                         * no one field) */
    long long min, max; /* ARG_INT and ARG_DURATION bounds */
} directive;

#define W(field) offsetof(workerConfig, field)
#define G(field) offsetof(groupConfig, field)
#define DMAX CONFIG_MAX_DURATION_MS

static const directive directives[D_COUNT] = {
    [D_REDIS]             = {"redis", 0, ARG_ADDR_UNIX, W(redis), 0, 0},
    [D_REDIS_PASSWORD]    = {"redis-password", 0, ARG_STRING,
                             W(redis_password), 0, 0},
    [D_REDIS_DB]          = {"redis-db", 0, ARG_INT, W(redis_db), 0, INT_MAX},
    [D_CONSUMER_NAME]     = {"consumer-name", 0, ARG_STRING,
                             W(consumer_name), 0, 0},
    [D_ADMIN]             = {"admin", 0, ARG_ADDR, W(admin), 0, 0},
    [D_ADMIN_PASSWORD]    = {"admin-password", 0, ARG_STRING,
                             W(admin_password), 0, 0},
    [D_DEAD_LETTER_STREAM] = {"dead-letter-stream", 0, ARG_STRING,
                             W(dead_letter_stream), 0, 0},
    [D_LOG]               = {"log", 0, ARG_STRING, W(log), 0, 0},
    [D_SHUTDOWN_TIMEOUT]  = {"shutdown-timeout", 0, ARG_DURATION,
                             W(shutdown_timeout_ms), 0, DMAX},
    [D_DONE_TTL]          = {"done-ttl", 0, ARG_DURATION, W(done_ttl_ms),
                             1000, CONFIG_MAX_KEEP_MS},
    [D_RETENTION]         = {"retention", 0, ARG_DURATION, W(retention_ms),
                             0, CONFIG_MAX_KEEP_MS},
    [D_GROUP]             = {"group", 0, ARG_GROUP, 0, 0, 0},
    [D_STREAM]            = {"stream", 1, ARG_STRING, G(stream), 0, 0},
    [D_HANDLER]           = {"handler", 1, ARG_HANDLER, G(handler), 0, 0},
    [D_URL]               = {"url", 1, ARG_URL, G(url), 0, 0},
    [D_TIMEOUT]           = {"timeout", 1, ARG_DURATION, G(timeout_ms),
                             1, DMAX},
    [D_CONCURRENCY]       = {"concurrency", 1, ARG_INT, G(concurrency),
                             1, 1024},
    [D_MAX_ATTEMPTS]      = {"max-attempts", 1, ARG_INT, G(max_attempts),
                             1, 1000},
    [D_BACKOFF_BASE]      = {"backoff-base", 1, ARG_DURATION,
                             G(backoff_base_ms), 1, DMAX},
    [D_BACKOFF_CAP]       = {"backoff-cap", 1, ARG_DURATION,
                             G(backoff_cap_ms), 1, DMAX},
    [D_MIN_IDLE]          = {"min-idle", 1, ARG_DURATION, G(min_idle_ms),
                             1, DMAX},
    [D_SCHEMA_VERSIONS]   = {"schema-versions", 1, ARG_VERSIONS, 0, 0, 0},
    [D_TYPES]             = {"types", 1, ARG_TYPES, 0, 0, 0},
};

#undef W
#undef G
#undef DMAX

/* Duration units, largest first (fmtDuration() picks the first that fits). */
static const struct {
    const char *name;
    long long ms;
} units[] = {
    {"d", 24 * 3600 * 1000}, {"h", 3600 * 1000}, {"m", 60 * 1000},
    {"s", 1000}, {"ms", 1}
};

/* The state of one load. */
typedef struct configParser {
    const char *name;       /* the file's name, for messages */
    int line;               /* the line being read, from 1 */
    workerConfig *cfg;      /* being filled in */
    int seen[D_COUNT];      /* line each directive was set on (0: not set);
                             * for group directives, in the current group */
    char *err;
    size_t errlen;
} configParser;

#ifdef __GNUC__
static int parserError(configParser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#endif

/* Writes "NAME:LINE: message" into the parser's error buffer, or
 * "NAME: message" when 'line' is 0 (an error about the whole file).
 * Returns CONFIG_ERR, so that callers can 'return parserError(...)'. */
static int parserError(configParser *p, int line, const char *fmt, ...) {
    va_list ap;
    int n;

    if (p->errlen == 0) return CONFIG_ERR;
    if (line > 0)
        n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, line);
    else
        n = snprintf(p->err, p->errlen, "%s: ", p->name);
    if (n < 0 || (size_t)n >= p->errlen) return CONFIG_ERR;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - n, fmt, ap);
    va_end(ap);
    return CONFIG_ERR;
}

static int parserOom(configParser *p) {
    return parserError(p, p->line, "out of memory");
}

/* Writes 's' into 'buf' (CONFIG_REPR_SIZE bytes) as a double-quoted string
 * a terminal shows safely: '"' and '\' escaped, bytes outside printable
 * ASCII as \xHH, cut after CONFIG_REPR_MAX bytes of 's' with "..." after the
 * closing quote. Returns 'buf', for use as a printf argument. */
static const char *repr(char *buf, const char *s) {
    size_t n = 0, i;

    buf[n++] = '"';
    for (i = 0; i < CONFIG_REPR_MAX && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20 || c > 0x7e) {
            n += (size_t)snprintf(buf + n, 5, "\\x%02x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n++] = '"';
    if (s[i] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* Writes 'ms' into 'buf' in the largest unit that holds it exactly
 * (120000 -> "2m", 1500 -> "1500ms"). Returns 'buf'. */
static const char *fmtDuration(char *buf, size_t size, long long ms) {
    size_t i;

    if (ms == 0) {
        snprintf(buf, size, "0");
        return buf;
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]) - 1; i++)
        if (ms >= units[i].ms && ms % units[i].ms == 0) break;
    snprintf(buf, size, "%lld%s", ms / units[i].ms, units[i].name);
    return buf;
}

/* Copies the 'len' bytes at 's' into a new NUL-terminated string. Returns it,
 * or NULL with the parser's error set when memory runs out. */
static char *parserStrndup(configParser *p, const char *s, size_t len) {
    char *copy = malloc(len + 1);

    if (copy == NULL) {
        parserOom(p);
        return NULL;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

static char *parserStrdup(configParser *p, const char *s) {
    return parserStrndup(p, s, strlen(s));
}

static void freeArgs(char **argv, int argc) {
    int i;

    for (i = 0; i < argc; i++) free(argv[i]);
    free(argv);
}

static int isBlank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    return tolower((unsigned char)c) - 'a' + 10;
}

/* Splits the line 's' of 'len' bytes into arguments as redis.conf lines are
 * split, plus comments at the end of a line:
 * - arguments are separated by blanks; an unquoted argument that starts with
 *   '#' starts a comment, to the end of the line ('#' inside an argument is
 *   an ordinary character: "url http://h/p#x" has no comment);
 * - an argument that starts with '"' runs to the next unescaped '"', with
 *   the escapes \n \r \t \b \a \xHH; '\' before any other character stands
 *   for that character;
 * - an argument that starts with '\'' runs to the next '\'', and \' is its
 *   only escape;
 * - a closing quote must be followed by a blank or the end of the line.
 * On success returns CONFIG_OK with the arguments in a new array '*argvp'
 * (NULL when there are none) of '*argcp' new strings, which the caller frees
 * with freeArgs(). Returns CONFIG_ERR with the parser's error set for
 * unbalanced quotes, a NUL byte spelled \x00, or no memory. */
static int splitLine(configParser *p, const char *s, size_t len,
                     char ***argvp, int *argcp) {
    char *buf = malloc(len + 1), **argv = NULL;
    int argc = 0, cap = 0;
    size_t i = 0;

    if (buf == NULL) return parserOom(p);
    for (;;) {
        size_t n = 0;

        while (i < len && isBlank(s[i])) i++;
        if (i == len || s[i] == '#') break;

        if (s[i] == '"' || s[i] == '\'') {
            char quote = s[i++];
            int closed = 0;

            while (i < len) {
                char c = s[i];

                if (c == quote) {
                    closed = 1;
                    i++;
                    break;
                }
                if (c == '\\' && i + 1 < len && quote == '"') {
                    if (s[i + 1] == 'x' && i + 3 < len &&
                        isxdigit((unsigned char)s[i + 2]) &&
                        isxdigit((unsigned char)s[i + 3])) {
                        c = (char)(hexValue(s[i + 2]) * 16 +
                                   hexValue(s[i + 3]));
                        i += 4;
                    } else {
                        switch (s[i + 1]) {
                        case 'n': c = '\n'; break;
                        case 'r': c = '\r'; break;
                        case 't': c = '\t'; break;
                        case 'b': c = '\b'; break;
                        case 'a': c = '\a'; break;
                        default: c = s[i + 1]; break;
                        }
                        i += 2;
                    }
                } else if (c == '\\' && i + 1 < len && s[i + 1] == '\'' &&
                           quote == '\'') {
                    c = '\'';
                    i += 2;
                } else {
                    i++;
                }
                if (c == '\0') {
                    parserError(p, p->line, "NUL byte in a quoted argument");
                    goto err;
                }
                buf[n++] = c;
            }
            if (!closed) {
                parserError(p, p->line, "unbalanced quotes");
                goto err;
            }
            if (i < len && !isBlank(s[i])) {
                parserError(p, p->line, "a closing quote must be followed "
                            "by a space or the end of the line");
                goto err;
            }
        } else {
            while (i < len && !isBlank(s[i])) buf[n++] = s[i++];
        }

        if (argc == cap) {
            int newcap = cap ? cap * 2 : 4;
            char **grown = realloc(argv, sizeof(*argv) * (size_t)newcap);

            if (grown == NULL) {
                parserOom(p);
                goto err;
            }
            argv = grown;
            cap = newcap;
        }
        if ((argv[argc] = parserStrndup(p, buf, n)) == NULL) goto err;
        argc++;
    }
    free(buf);
    *argvp = argv;
    *argcp = argc;
    return CONFIG_OK;

err:
    free(buf);
    freeArgs(argv, argc);
    return CONFIG_ERR;
}

/* Parses the decimal integer 's' (an optional '-', then digits) into '*v'.
 * A value beyond long long is clamped to LLONG_MIN or LLONG_MAX, which every
 * range check refuses. Returns 0, or -1 when 's' is not an integer. */
static int parseInteger(const char *s, long long *v) {
    int neg = (*s == '-');
    long long n = 0;

    if (neg) s++;
    if (!isdigit((unsigned char)*s)) return -1;
    for (; isdigit((unsigned char)*s); s++) {
        int digit = *s - '0';

        if (n > (LLONG_MAX - digit) / 10)
            n = LLONG_MAX;
        else
            n = n * 10 + digit;
    }
    if (*s != '\0') return -1;
    *v = neg ? (n == LLONG_MAX ? LLONG_MIN : -n) : n;
    return 0;
}

/* Parses a duration, digits and a unit ("250ms", "5s", "2m", "1h"; the unit
 * in any case), into milliseconds in '*ms', clamped to LLONG_MAX. Returns 0,
 * or -1 when 's' is not a duration (no unit is an error: "5" is ambiguous). */
static int parseDuration(const char *s, long long *ms) {
    long long n = 0;
    size_t i;

    if (strcmp(s, "0") == 0) {      /* zero needs no unit */
        *ms = 0;
        return 0;
    }
    if (strcmp(s, "0") == 0) {      /* zero needs no unit */
        *ms = 0;
        return 0;
    }
    if (!isdigit((unsigned char)*s)) return -1;
    for (; isdigit((unsigned char)*s); s++) {
        int digit = *s - '0';

        if (n > (LLONG_MAX - digit) / 10)
            n = LLONG_MAX;
        else
            n = n * 10 + digit;
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(s, units[i].name) == 0) {
            *ms = n > LLONG_MAX / units[i].ms ? LLONG_MAX : n * units[i].ms;
            return 0;
        }
    }
    return -1;
}

static void freeAddr(configAddr *addr) {
    free(addr->host);
    free(addr->path);
    addr->host = addr->path = NULL;
    addr->port = 0;
}

/* Sets 'addr' from the argument 'arg' of the address directive 'd':
 * "host:port", "[ipv6]:port", and for ARG_ADDR_UNIX also "unix:/path".
 * Returns CONFIG_OK, or CONFIG_ERR with the parser's error set. */
static int setAddr(configParser *p, const directive *d, const char *arg,
                   configAddr *addr) {
    char q[CONFIG_REPR_SIZE];
    configAddr a = {NULL, 0, NULL};

    if (d->type == ARG_ADDR_UNIX && strncmp(arg, "unix:", 5) == 0) {
        const char *path = arg + 5;
        size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

        if (*path == '\0') goto bad;
        if (strlen(path) > max)
            return parserError(p, p->line, "bad address %s for \"%s\" "
                               "(a socket path has at most %zu bytes)",
                               repr(q, arg), d->name, max);
        if ((a.path = parserStrdup(p, path)) == NULL) return CONFIG_ERR;
    } else {
        const char *colon = strrchr(arg, ':'), *host = arg;
        size_t hostlen;
        long long port;

        if (colon == NULL) goto bad;
        if (arg[0] == '[') {
            if (colon == arg || colon[-1] != ']') goto bad;
            host = arg + 1;
            hostlen = (size_t)(colon - 1 - host);
        } else {
            hostlen = (size_t)(colon - arg);
            if (memchr(arg, ':', hostlen) != NULL)
                return parserError(p, p->line, "bad address %s for \"%s\" "
                                   "(write an IPv6 address in brackets: "
                                   "[::1]:6379)", repr(q, arg), d->name);
        }
        if (hostlen == 0 || !isdigit((unsigned char)colon[1]) ||
            parseInteger(colon + 1, &port) != 0) goto bad;
        if (port < 1 || port > 65535)
            return parserError(p, p->line, "bad address %s for \"%s\" "
                               "(the port must be between 1 and 65535)",
                               repr(q, arg), d->name);
        if ((a.host = parserStrndup(p, host, hostlen)) == NULL)
            return CONFIG_ERR;
        a.port = (int)port;
    }
    freeAddr(addr);
    *addr = a;
    return CONFIG_OK;

bad:
    return parserError(p, p->line, "bad address %s for \"%s\" (expected %s)",
                       repr(q, arg), d->name,
                       d->type == ARG_ADDR_UNIX ?
                       "host:port or unix:/path" : "host:port");
}

/* Checks that 'url' is an http:// or https:// URL with a host and nothing a
 * request line cannot carry. Returns CONFIG_OK, or CONFIG_ERR with the
 * parser's error set. */
static int checkUrl(configParser *p, const char *url) {
    char q[CONFIG_REPR_SIZE];
    const char *rest, *c;

    if (strncasecmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        rest = url + 8;
    else
        return parserError(p, p->line, "bad url %s (expected http:// or "
                           "https://)", repr(q, url));
    for (c = url; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return parserError(p, p->line, "bad url %s (spaces and control "
                               "characters must be percent-encoded)",
                               repr(q, url));
    if (*rest == '\0' || strchr("/?#", *rest) != NULL)
        return parserError(p, p->line, "bad url %s (no host)", repr(q, url));
    return CONFIG_OK;
}

static void freeTypes(char **types, int count) {
    int i;

    if (types == NULL) return;
    for (i = 0; i < count; i++) free(types[i]);
    free(types);
}

/* Sets the schema versions of a group from 'argc' arguments: integers from
 * 0 to CONFIG_MAX_SCHEMA_VERSION, each listed once. The new array replaces
 * '*versions' (freed) and its length '*count'. Returns CONFIG_OK, or
 * CONFIG_ERR with the parser's error set. */
static int setVersions(configParser *p, int argc, char **argv, int **versions,
                       int *count) {
    char q[CONFIG_REPR_SIZE];
    int *v = malloc(sizeof(*v) * (size_t)argc), i, j;

    if (v == NULL) return parserOom(p);
    for (i = 0; i < argc; i++) {
        long long n;

        if (parseInteger(argv[i], &n) != 0) {
            parserError(p, p->line, "bad number %s for \"schema-versions\"",
                        repr(q, argv[i]));
            goto err;
        }
        if (n < 0 || n > CONFIG_MAX_SCHEMA_VERSION) {
            parserError(p, p->line, "\"schema-versions\" must be between 0 "
                        "and %d, got %s", CONFIG_MAX_SCHEMA_VERSION,
                        repr(q, argv[i]));
            goto err;
        }
        for (j = 0; j < i; j++) {
            if (v[j] == n) {
                parserError(p, p->line, "schema version %lld is listed "
                            "twice", n);
                goto err;
            }
        }
        v[i] = (int)n;
    }
    free(*versions);
    *versions = v;
    *count = argc;
    return CONFIG_OK;

err:
    free(v);
    return CONFIG_ERR;
}

/* Sets the event types of a group from 'argc' arguments: CloudEvents type
 * names (printable ASCII, no spaces), each listed once. Returns CONFIG_OK,
 * or CONFIG_ERR with the parser's error set. */
static int setTypes(configParser *p, int argc, char **argv, char ***types,
                    int *count) {
    char q[CONFIG_REPR_SIZE];
    char **t = calloc((size_t)argc, sizeof(*t));
    const char *c;
    int i, j;

    if (t == NULL) return parserOom(p);
    for (i = 0; i < argc; i++) {
        size_t len = strlen(argv[i]);

        for (c = argv[i]; *c != '\0'; c++)
            if (*c <= ' ' || *c > '~') break;
        if (len == 0 || len > CONFIG_MAX_TYPE || *c != '\0') {
            parserError(p, p->line, "bad event type %s for \"types\" "
                        "(printable ASCII without spaces, at most %d "
                        "bytes)", repr(q, argv[i]), CONFIG_MAX_TYPE);
            goto err;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(t[j], argv[i]) == 0) {
                parserError(p, p->line, "event type %s is listed twice",
                            repr(q, argv[i]));
                goto err;
            }
        }
        if ((t[i] = parserStrdup(p, argv[i])) == NULL) goto err;
    }
    freeTypes(*types, *count);
    *types = t;
    *count = argc;
    return CONFIG_OK;

err:
    freeTypes(t, argc);
    return CONFIG_ERR;
}

static void freeGroup(groupConfig *g) {
    free(g->name);
    free(g->stream);
    free(g->url);
    free(g->schema_versions);
    freeTypes(g->types, g->ntypes);
}

void configFree(workerConfig *cfg) {
    int i;

    if (cfg == NULL) return;
    freeAddr(&cfg->redis);
    free(cfg->redis_password);
    free(cfg->consumer_name);
    freeAddr(&cfg->admin);
    free(cfg->admin_password);
    free(cfg->dead_letter_stream);
    free(cfg->log);
    for (i = 0; i < cfg->ngroups; i++) freeGroup(&cfg->groups[i]);
    free(cfg->groups);
    free(cfg);
}

/* Returns a new config holding the global defaults and no group, or NULL
 * with the parser's error set. */
static workerConfig *configCreate(configParser *p) {
    workerConfig *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL) {
        parserOom(p);
        return NULL;
    }
    cfg->admin.port = 6381;
    cfg->shutdown_timeout_ms = 10 * 1000;
    cfg->done_ttl_ms = 7LL * 24 * 3600 * 1000;
    cfg->retention_ms = 3600 * 1000;
    if ((cfg->admin.host = parserStrdup(p, "127.0.0.1")) == NULL ||
        (cfg->dead_letter_stream =
             parserStrdup(p, CHECKOUT_DEAD_LETTER_DEFAULT)) == NULL ||
        (cfg->log = parserStrdup(p, "stderr")) == NULL) {
        configFree(cfg);
        return NULL;
    }
    return cfg;
}

/* The line the error about two related settings belongs on: the later of
 * the lines they were set on (one at least was set, or the defaults would
 * be wrong). */
static int laterLine(configParser *p, int a, int b) {
    return p->seen[a] > p->seen[b] ? p->seen[a] : p->seen[b];
}

/* The error about two durations of a group that do not go together:
 * "min-idle 5s must be greater than timeout 5s (default)<tail>", on the
 * later line of the two. Returns CONFIG_ERR. */
static int pairError(configParser *p, int da, long long a_ms,
                     const char *relation, int db, long long b_ms,
                     const char *tail) {
    char a[32], b[32];

    return parserError(p, laterLine(p, da, db), "%s %s%s %s %s %s%s%s",
                       directives[da].name, fmtDuration(a, sizeof(a), a_ms),
                       p->seen[da] ? "" : " (default)", relation,
                       directives[db].name, fmtDuration(b, sizeof(b), b_ms),
                       p->seen[db] ? "" : " (default)", tail);
}

/* Checks the settings of the group 'g' against each other, once its section
 * has ended. Returns CONFIG_OK, or CONFIG_ERR with the parser's error set. */
static int finishGroup(configParser *p, const groupConfig *g) {
    char q[CONFIG_REPR_SIZE], r[CONFIG_REPR_SIZE];

    if (g->handler == HANDLER_HTTP && g->url == NULL)
        return parserError(p, g->line, "group %s has no \"url\" (handler "
                           "http needs one)", repr(q, g->name));
    if (g->backoff_cap_ms < g->backoff_base_ms)
        return pairError(p, D_BACKOFF_CAP, g->backoff_cap_ms,
                         "is less than", D_BACKOFF_BASE, g->backoff_base_ms,
                         "");
    if (g->min_idle_ms <= g->timeout_ms)
        return pairError(p, D_MIN_IDLE, g->min_idle_ms,
                         "must be greater than", D_TIMEOUT, g->timeout_ms,
                         " (or entries still being delivered are reclaimed)");
    if (g->min_idle_ms <= g->backoff_cap_ms)
        return pairError(p, D_MIN_IDLE, g->min_idle_ms,
                         "must be greater than", D_BACKOFF_CAP,
                         g->backoff_cap_ms,
                         " (or entries waiting for a retry are reclaimed)");
    if (strcmp(g->stream, p->cfg->dead_letter_stream) == 0)
        return parserError(p, laterLine(p, D_STREAM, D_DEAD_LETTER_STREAM),
                           "group %s reads the dead-letter stream %s",
                           repr(q, g->name),
                           repr(r, p->cfg->dead_letter_stream));
    return CONFIG_OK;
}

/* The fields the nginx module keeps in a checkout's state hash, where each
 * group has a field of its own. */
#define RESERVED(field) field,
static const char *const reserved[] = {
    CHECKOUT_STATE_FIELDS(RESERVED) NULL
};

/* Ends the current group section, if any, and starts the one named 'name'
 * with the group defaults. Returns CONFIG_OK, or CONFIG_ERR with the
 * parser's error set. */
static int startGroup(configParser *p, const char *name) {
    workerConfig *cfg = p->cfg;
    char q[CONFIG_REPR_SIZE];
    groupConfig *groups, *g;
    const char *c;
    int i;

    if (cfg->ngroups > 0 &&
        finishGroup(p, &cfg->groups[cfg->ngroups - 1]) != CONFIG_OK)
        return CONFIG_ERR;

    /* The name is a Redis group name, a hash field, an admin command
     * argument and the prefix of "group:ce_id" idempotency keys. */
    if (*name == '\0')
        return parserError(p, p->line, "empty group name");
    if (strlen(name) > CONFIG_MAX_GROUP_NAME)
        return parserError(p, p->line, "group name %s is longer than %d "
                           "bytes", repr(q, name), CONFIG_MAX_GROUP_NAME);
    for (i = 0; reserved[i] != NULL; i++)
        if (strcmp(name, reserved[i]) == 0)
            return parserError(p, p->line, "group name %s is a field of "
                               "the checkout state hash (the task's field "
                               "would overwrite it)", repr(q, name));
    for (c = name; *c != '\0'; c++)
        if (!isalnum((unsigned char)*c) && strchr("-_.", *c) == NULL)
            return parserError(p, p->line, "bad group name %s (letters, "
                               "digits, '-', '_' and '.' only)",
                               repr(q, name));
    for (i = 0; i < cfg->ngroups; i++)
        if (strcmp(cfg->groups[i].name, name) == 0)
            return parserError(p, p->line, "duplicate group %s (already "
                               "defined at line %d)", repr(q, name),
                               cfg->groups[i].line);

    groups = realloc(cfg->groups, sizeof(*groups) * (size_t)(cfg->ngroups + 1));
    if (groups == NULL) return parserOom(p);
    cfg->groups = groups;
    g = &groups[cfg->ngroups];
    memset(g, 0, sizeof(*g));
    cfg->ngroups++;     /* now configFree() frees what is set below */

    g->line = p->line;
    g->handler = HANDLER_HTTP;
    g->timeout_ms = 5 * 1000;
    g->concurrency = 1;
    g->max_attempts = 5;
    g->backoff_base_ms = 200;
    g->backoff_cap_ms = 30 * 1000;
    g->min_idle_ms = 60 * 1000;
    if ((g->name = parserStrdup(p, name)) == NULL ||
        (g->stream = parserStrdup(p, CHECKOUT_STREAM_DEFAULT)) == NULL)
        return CONFIG_ERR;
    if ((g->schema_versions = malloc(sizeof(int))) == NULL)
        return parserOom(p);
    g->schema_versions[0] = 1;
    g->nschema_versions = 1;

    for (i = 0; i < D_COUNT; i++)
        if (directives[i].in_group) p->seen[i] = 0;
    return CONFIG_OK;
}

/* Applies one directive line of 'argc' arguments, 'argv[0]' being the
 * directive's name. Returns CONFIG_OK, or CONFIG_ERR with the parser's
 * error set. */
static int applyDirective(configParser *p, int argc, char **argv) {
    workerConfig *cfg = p->cfg;
    char q[CONFIG_REPR_SIZE], a[32], b[32];
    const directive *d = NULL;
    const char *arg = argc > 1 ? argv[1] : NULL;
    int id, nargs = argc - 1;
    char *field;
    long long v;

    for (id = 0; id < D_COUNT; id++) {
        if (strcasecmp(argv[0], directives[id].name) == 0) {
            d = &directives[id];
            break;
        }
    }
    if (d == NULL)
        return parserError(p, p->line, "unknown directive %s",
                           repr(q, argv[0]));
    if (d->in_group && cfg->ngroups == 0)
        return parserError(p, p->line, "\"%s\" is only valid in a group "
                           "section (after \"group NAME\")", d->name);
    if (!d->in_group && d->type != ARG_GROUP && cfg->ngroups > 0)
        return parserError(p, p->line, "\"%s\" is a global directive: it "
                           "must come before the first group", d->name);
    if (d->type == ARG_VERSIONS || d->type == ARG_TYPES ? nargs < 1
                                                        : nargs != 1)
        return parserError(p, p->line, "wrong number of arguments for "
                           "\"%s\" (expected %s, got %d)", d->name,
                           d->type == ARG_VERSIONS || d->type == ARG_TYPES
                               ? "1 or more" : "1",
                           nargs);
    if (d->type != ARG_GROUP && p->seen[id])
        return parserError(p, p->line, "duplicate \"%s\" (already set at "
                           "line %d)", d->name, p->seen[id]);

    field = d->in_group ? (char *)&cfg->groups[cfg->ngroups - 1]
                        : (char *)cfg;
    field += d->offset;

    switch (d->type) {
    case ARG_GROUP:
        if (startGroup(p, arg) != CONFIG_OK) return CONFIG_ERR;
        break;
    case ARG_STRING:
    case ARG_URL: {
        char *copy;

        if (*arg == '\0')
            return parserError(p, p->line, "empty value for \"%s\"",
                               d->name);
        if (d->type == ARG_URL && checkUrl(p, arg) != CONFIG_OK)
            return CONFIG_ERR;
        if ((copy = parserStrdup(p, arg)) == NULL) return CONFIG_ERR;
        free(*(char **)field);
        *(char **)field = copy;
        break;
    }
    case ARG_INT:
        if (parseInteger(arg, &v) != 0)
            return parserError(p, p->line, "bad number %s for \"%s\"",
                               repr(q, arg), d->name);
        if (v < d->min || v > d->max)
            return parserError(p, p->line, "\"%s\" must be between %lld "
                               "and %lld, got %s", d->name, d->min, d->max,
                               repr(q, arg));
        *(int *)field = (int)v;
        break;
    case ARG_DURATION:
        if (parseDuration(arg, &v) != 0)
            return parserError(p, p->line, "bad duration %s for \"%s\" "
                               "(expected a number and a unit: 250ms, 5s, "
                               "2m, 1h)", repr(q, arg), d->name);
        if (v < d->min || v > d->max)
            return parserError(p, p->line, "\"%s\" must be between %s and "
                               "%s, got %s", d->name,
                               fmtDuration(a, sizeof(a), d->min),
                               fmtDuration(b, sizeof(b), d->max),
                               repr(q, arg));
        *(long long *)field = v;
        break;
    case ARG_ADDR:
    case ARG_ADDR_UNIX:
        if (setAddr(p, d, arg, (configAddr *)field) != CONFIG_OK)
            return CONFIG_ERR;
        break;
    case ARG_HANDLER:
        if (strcasecmp(arg, "http") != 0)
            return parserError(p, p->line, "unknown handler %s (the only "
                               "handler is \"http\")", repr(q, arg));
        *(handlerType *)field = HANDLER_HTTP;
        break;
    case ARG_VERSIONS: {
        groupConfig *g = &cfg->groups[cfg->ngroups - 1];

        if (setVersions(p, nargs, argv + 1, &g->schema_versions,
                        &g->nschema_versions) != CONFIG_OK)
            return CONFIG_ERR;
        break;
    }
    case ARG_TYPES: {
        groupConfig *g = &cfg->groups[cfg->ngroups - 1];

        if (setTypes(p, nargs, argv + 1, &g->types, &g->ntypes) != CONFIG_OK)
            return CONFIG_ERR;
        break;
    }
    }
    p->seen[id] = p->line;
    return CONFIG_OK;
}

/* Reads the one line 's' of 'len' bytes (without its '\n'). Returns
 * CONFIG_OK, or CONFIG_ERR with the parser's error set. */
static int parseLine(configParser *p, const char *s, size_t len) {
    char **argv = NULL;
    int argc = 0, rc;

    if (memchr(s, '\0', len) != NULL)
        return parserError(p, p->line, "NUL byte in the line");
    if (splitLine(p, s, len, &argv, &argc) != CONFIG_OK) return CONFIG_ERR;
    rc = argc > 0 ? applyDirective(p, argc, argv) : CONFIG_OK;
    freeArgs(argv, argc);
    return rc;
}

/* Parses the 'len' bytes of 'buf', the text of the file 'name'. On success
 * returns CONFIG_OK with a new config in '*cfg'; otherwise returns CONFIG_ERR
 * with '*cfg' set to NULL and the message in 'err'. */
static int loadBuffer(const char *buf, size_t len, const char *name,
                      workerConfig **cfg, char *err, size_t errlen) {
    configParser p;
    size_t start = 0;

    memset(&p, 0, sizeof(p));
    p.name = name;
    p.err = err;
    p.errlen = errlen;
    if (errlen > 0) err[0] = '\0';
    *cfg = NULL;
    if ((p.cfg = configCreate(&p)) == NULL) return CONFIG_ERR;

    while (start < len) {
        const char *nl = memchr(buf + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - buf) : len;

        p.line++;
        if (parseLine(&p, buf + start, end - start) != CONFIG_OK) goto err;
        start = end + 1;
    }
    if (p.cfg->ngroups > 0 &&
        finishGroup(&p, &p.cfg->groups[p.cfg->ngroups - 1]) != CONFIG_OK)
        goto err;
    if (!p.seen[D_REDIS]) {
        parserError(&p, 0, "no \"redis\" directive (the Redis server to "
                    "read from: host:port or unix:/path)");
        goto err;
    }
    if (p.cfg->ngroups == 0) {
        parserError(&p, 0, "no group (add a section: \"group NAME\" and "
                    "its directives)");
        goto err;
    }
    *cfg = p.cfg;
    return CONFIG_OK;

err:
    configFree(p.cfg);
    return CONFIG_ERR;
}

/* Loads the config from the NUL-terminated 'text'; 'name' stands for the
 * file name in messages. On success returns CONFIG_OK and sets '*cfg' to a
 * new config the caller frees with configFree(). On error returns CONFIG_ERR,
 * sets '*cfg' to NULL and writes the message ("NAME:LINE: what is wrong", or
 * "NAME: what is wrong" about the file as a whole) into 'err', 'errlen'
 * bytes at most with the NUL. */
int configLoadString(const char *text, const char *name, workerConfig **cfg,
                     char *err, size_t errlen) {
    return loadBuffer(text, strlen(text), name, cfg, err, errlen);
}

/* Loads the config file 'path'; 'path' is the file name in messages. Returns
 * as configLoadString() does; the errors also include a file that cannot be
 * read, is larger than CONFIG_MAX_FILE, or has a NUL byte. */
int configLoad(const char *path, workerConfig **cfg, char *err,
               size_t errlen) {
    configParser p;
    FILE *fp;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;

    memset(&p, 0, sizeof(p));
    p.name = path;
    p.err = err;
    p.errlen = errlen;
    *cfg = NULL;

    if ((fp = fopen(path, "r")) == NULL)
        return parserError(&p, 0, "cannot open: %s", strerror(errno));
    /* Read one byte past the limit, to tell a file at the limit from a
     * larger one. */
    for (;;) {
        size_t n;

        if (len == cap) {
            size_t newcap = cap ? cap * 2 : 4096;
            char *grown;

            if (newcap > CONFIG_MAX_FILE + 1) newcap = CONFIG_MAX_FILE + 1;
            if ((grown = realloc(buf, newcap)) == NULL) {
                rc = parserOom(&p);
                goto done;
            }
            buf = grown;
            cap = newcap;
        }
        n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (n == 0 || len > CONFIG_MAX_FILE) break;
    }
    if (len > CONFIG_MAX_FILE) {
        rc = parserError(&p, 0, "larger than %d bytes: not a config file",
                         CONFIG_MAX_FILE);
        goto done;
    }
    if (ferror(fp)) {
        rc = parserError(&p, 0, "cannot read: %s", strerror(errno));
        goto done;
    }
    rc = loadBuffer(buf, len, path, cfg, err, errlen);

done:
    fclose(fp);
    free(buf);
    return rc;
}
