/* checkout-worker admin port: RESP over plain non-blocking sockets driven by
 * libevent events (one read and one write event per client, as Redis's own
 * networking does), requests parsed with hiredis's reply reader.
 *
 * Before bytes reach the reader, a scanner checks the framing of each
 * request as it arrives: hiredis 0.14.1 reads lengths loosely ("+5", "-7",
 * overflowing digits), allocates whatever array size it is told, and waits
 * for any announced bulk length. The scanner refuses those at once and
 * keeps a request under ADMIN_MAX_REQUEST bytes, so that the reader never
 * holds more than that plus one read. Bytes after a framing error are never
 * fed: the requests before it are still served, then the error is the last
 * reply.
 *
 * A client's life: its events are freed and its socket closed when the peer
 * goes away, the server closes or the client breaks a limit; its struct
 * lives on while a command holds it (busy: adminCommandDone() not called
 * yet) or while clientProcessInput() is on the stack (a command may close
 * the whole server from inside its proc), and is freed by whichever of
 * those lets go last. */

#define _POSIX_C_SOURCE 200809L     /* getaddrinfo, strdup, MSG_NOSIGNAL */

#include "admin.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#define ADMIN_BACKLOG 511
#define ADMIN_READ_CHUNK (16 * 1024)
#define ADMIN_ACCEPTS_PER_CALL 64   /* then let other events run */
#define ADMIN_ACCEPT_PAUSE_MS 100   /* after running out of descriptors */
#define ADMIN_NAME_SHOWN 64         /* bytes of an unknown name echoed */
#define ADMIN_KEEP_OBUF (64 * 1024) /* larger idle output buffers are freed */
/* Unsent reply bytes past which a client's next requests wait: a client
 * that pipelines and does not read holds this much, not ADMIN_MAX_OUTPUT. */
#define ADMIN_MAX_BACKLOG (256 * 1024)
#define ADMIN_ADDR_SIZE 80          /* "[host]:port" of a peer */

/* Where the scanner is in a request: "*N\r\n" then N times "$L\r\n" and L
 * bytes and "\r\n". */
typedef enum scanState {
    SCAN_ARRAY,         /* at the '*' that starts a request */
    SCAN_COUNT,         /* in the digits of N */
    SCAN_COUNT_LF,      /* at the '\n' after them */
    SCAN_BULK,          /* at the '$' of an argument */
    SCAN_LEN,           /* in the digits of L */
    SCAN_LEN_LF,
    SCAN_DATA,          /* in the argument's bytes */
    SCAN_DATA_CR,       /* at the "\r\n" after them */
    SCAN_DATA_LF
} scanState;

typedef struct requestScanner {
    scanState state;
    long long num;      /* the number being read */
    int digits;         /* digits of it read so far */
    long long args;     /* arguments of the request still to come */
    size_t skip;        /* bytes of the argument still to come */
    size_t size;        /* bytes of the request so far */
    char err[96];       /* not empty: the stream is broken here, and why */
} requestScanner;

typedef struct adminListener {
    int fd;
    struct event *ev;
} adminListener;

struct adminServer {
    struct event_base *base;
    adminListener *listeners;
    int nlisteners;
    int port;
    struct event *resume_ev;    /* accepting again after EMFILE */
    int accept_failing;         /* logged; quiet until an accept works */
    char *password;             /* NULL: no AUTH */
    const adminCommand *table;
    void *privdata;
    adminClient *clients;       /* connected ones */
    int nclients;
};

struct adminClient {
    adminServer *server;        /* NULL once closed */
    adminClient *prev, *next;   /* the server's list */
    int fd;                     /* -1 once closed */
    char addr[ADMIN_ADDR_SIZE]; /* the peer, for the log */
    struct event *rev, *wev;
    int reading, writing;       /* rev, wev added */
    redisReader *reader;
    requestScanner scan;
    redisReply *request;        /* the one being served */
    char **argv;
    size_t *argvlen;
    int busy;                   /* its command is not done yet */
    int processing;             /* clientProcessInput() is on the stack */
    int throttled;              /* requests wait for the replies to go */
    int authenticated;
    int close_after_reply;
    char *obuf;                 /* replies; obuf[opos..olen) unsent */
    size_t opos, olen, osize;
};

static void clientProcessInput(adminClient *c);

/* ----------------------------------------------------------- the scanner */

/* Writes 'ch' as the scanner's messages show a byte: 'x', or '\xHH' for
 * anything but printable ASCII. */
static void byteRepr(char *buf, size_t size, unsigned char ch) {
    if (ch > 0x20 && ch < 0x7f && ch != '\'' && ch != '\\')
        snprintf(buf, size, "'%c'", ch);
    else
        snprintf(buf, size, "'\\x%02x'", ch);
}

/* Scans one byte outside an argument's data. Returns 0, or -1 with the
 * scanner's 'err' set. */
static int scanByte(requestScanner *sc, unsigned char ch) {
    char got[8];

    if (++sc->size > ADMIN_MAX_REQUEST) goto toolarge;
    switch (sc->state) {
    case SCAN_ARRAY:
        if (ch == '*') {
            sc->state = SCAN_COUNT;
            sc->num = sc->digits = 0;
            return 0;
        }
        /* A letter first is someone typing "PING" through nc or telnet. */
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
            snprintf(sc->err, sizeof(sc->err),
                     "inline commands are not supported");
        } else {
            byteRepr(got, sizeof(got), ch);
            snprintf(sc->err, sizeof(sc->err), "expected '*', got %s", got);
        }
        return -1;
    case SCAN_COUNT:
    case SCAN_LEN:
        if (ch >= '0' && ch <= '9') {
            sc->num = sc->num * 10 + (ch - '0');
            sc->digits++;
            /* Checked at each digit, so that 'num' never overflows. */
            if (sc->state == SCAN_COUNT && sc->num > ADMIN_MAX_ARGS)
                goto toomany;
            if (sc->state == SCAN_LEN && sc->num > ADMIN_MAX_REQUEST)
                goto toolarge;
            return 0;
        }
        if (ch == '\r' && sc->digits > 0) {
            sc->state = sc->state == SCAN_COUNT ? SCAN_COUNT_LF : SCAN_LEN_LF;
            return 0;
        }
        goto badlength;
    case SCAN_COUNT_LF:
        if (ch != '\n') goto badlength;
        if (sc->num == 0) {
            snprintf(sc->err, sizeof(sc->err), "empty request");
            return -1;
        }
        sc->args = sc->num;
        sc->state = SCAN_BULK;
        return 0;
    case SCAN_BULK:
        if (ch != '$') {
            byteRepr(got, sizeof(got), ch);
            snprintf(sc->err, sizeof(sc->err), "expected '$', got %s", got);
            return -1;
        }
        sc->state = SCAN_LEN;
        sc->num = sc->digits = 0;
        return 0;
    case SCAN_LEN_LF:
        if (ch != '\n') goto badlength;
        if (sc->size + (size_t)sc->num + 2 > ADMIN_MAX_REQUEST) goto toolarge;
        sc->skip = (size_t)sc->num;
        sc->state = sc->skip > 0 ? SCAN_DATA : SCAN_DATA_CR;
        return 0;
    case SCAN_DATA_CR:
    case SCAN_DATA_LF:
        if (ch != (sc->state == SCAN_DATA_CR ? '\r' : '\n')) {
            snprintf(sc->err, sizeof(sc->err),
                     "bulk string not followed by CRLF");
            return -1;
        }
        if (sc->state == SCAN_DATA_CR) {
            sc->state = SCAN_DATA_LF;
        } else if (--sc->args > 0) {
            sc->state = SCAN_BULK;
        } else {
            sc->state = SCAN_ARRAY;
            sc->size = 0;
        }
        return 0;
    case SCAN_DATA:             /* skipped by scanRequests() */
        break;
    }
    return 0;

toolarge:
    snprintf(sc->err, sizeof(sc->err), "request larger than %d bytes",
             ADMIN_MAX_REQUEST);
    return -1;
toomany:
    snprintf(sc->err, sizeof(sc->err), "more than %d arguments",
             ADMIN_MAX_ARGS);
    return -1;
badlength:
    snprintf(sc->err, sizeof(sc->err), "invalid %s length",
             sc->state == SCAN_COUNT || sc->state == SCAN_COUNT_LF ?
             "multibulk" : "bulk");
    return -1;
}

/* Scans 'len' bytes that came after those already scanned. Returns how many
 * of them are good: all of them, or fewer with the scanner's 'err' set. */
static size_t scanRequests(requestScanner *sc, const char *buf, size_t len) {
    size_t i = 0;

    while (i < len) {
        if (sc->state == SCAN_DATA) {
            size_t n = len - i < sc->skip ? len - i : sc->skip;

            sc->skip -= n;
            sc->size += n;
            i += n;
            if (sc->skip == 0) sc->state = SCAN_DATA_CR;
            continue;
        }
        if (scanByte(sc, (unsigned char)buf[i]) == -1) break;
        i++;
    }
    return i;
}

/* --------------------------------------------------------------- clients */

static void clientFree(adminClient *c) {
    free(c->argv);
    free(c->argvlen);
    if (c->request != NULL) freeReplyObject(c->request);
    free(c);
}

/* Closes the connection: nothing more is read or written. The struct is
 * freed now unless a command or clientProcessInput() still holds it. */
static void clientClose(adminClient *c) {
    adminServer *s = c->server;

    if (c->fd == -1) return;
    event_free(c->rev);
    event_free(c->wev);
    close(c->fd);
    c->fd = -1;
    redisReaderFree(c->reader);
    c->reader = NULL;
    free(c->obuf);
    c->obuf = NULL;
    c->opos = c->olen = c->osize = 0;
    if (s != NULL) {
        if (c->prev != NULL) c->prev->next = c->next;
        else s->clients = c->next;
        if (c->next != NULL) c->next->prev = c->prev;
        s->nclients--;
        c->server = NULL;
    }
    if (!c->busy && !c->processing) clientFree(c);
}

/* Adds or removes the client's events to match what it waits for. Closes
 * the client when libevent refuses. */
static void clientUpdateEvents(adminClient *c) {
    int want_read = !c->busy && !c->close_after_reply &&
                    c->scan.err[0] == '\0' &&
                    c->olen - c->opos <= ADMIN_MAX_BACKLOG;
    int want_write = c->opos < c->olen;
    int rc = 0;

    if (want_read != c->reading)
        rc |= want_read ? event_add(c->rev, NULL) : event_del(c->rev);
    if (want_write != c->writing)
        rc |= want_write ? event_add(c->wev, NULL) : event_del(c->wev);
    c->reading = want_read;
    c->writing = want_write;
    if (rc != 0) {
        logMsg(LOG_ERROR, "admin: cannot watch client %s", c->addr);
        clientClose(c);
    }
}

/* Writes what the socket takes of the pending replies, and closes the
 * client when it is finished with. May free 'c'. */
static void clientFlush(adminClient *c) {
    while (c->opos < c->olen) {
        ssize_t n = send(c->fd, c->obuf + c->opos, c->olen - c->opos,
                         MSG_NOSIGNAL);

        if (n >= 0) {
            c->opos += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            clientClose(c);         /* the peer is gone */
            return;
        }
    }
    if (c->opos == c->olen) {
        c->opos = c->olen = 0;
        /* One large reply (a long DLQ) should not pin its buffer. */
        if (c->osize > ADMIN_KEEP_OBUF) {
            free(c->obuf);
            c->obuf = NULL;
            c->osize = 0;
        }
        if (c->close_after_reply && !c->busy) {
            clientClose(c);
            return;
        }
    }
    if (c->throttled && !c->busy && !c->processing &&
        c->olen - c->opos <= ADMIN_MAX_BACKLOG) {
        c->throttled = 0;
        clientProcessInput(c);      /* the requests that waited */
        return;
    }
    clientUpdateEvents(c);
}

/* Queues 'len' bytes of reply. A client whose unsent replies would pass
 * ADMIN_MAX_OUTPUT is closed: it is not reading them. */
static void clientAppend(adminClient *c, const char *buf, size_t len) {
    if (c->fd == -1) return;
    if (c->olen - c->opos + len > ADMIN_MAX_OUTPUT) {
        logMsg(LOG_WARN, "admin: client %s over the output limit of %d "
               "bytes, closing it", c->addr, ADMIN_MAX_OUTPUT);
        clientClose(c);
        return;
    }
    if (c->olen + len > c->osize && c->opos > 0) {
        memmove(c->obuf, c->obuf + c->opos, c->olen - c->opos);
        c->olen -= c->opos;
        c->opos = 0;
    }
    if (c->olen + len > c->osize) {
        size_t size = c->osize ? c->osize : 1024;
        char *obuf;

        while (size < c->olen + len) size *= 2;
        if ((obuf = realloc(c->obuf, size)) == NULL) {
            logMsg(LOG_ERROR, "admin: out of memory for a reply to %s",
                   c->addr);
            clientClose(c);
            return;
        }
        c->obuf = obuf;
        c->osize = size;
    }
    memcpy(c->obuf + c->olen, buf, len);
    c->olen += len;
}

/* Appends a status or error line: 'prefix' then 'text' with CR and LF made
 * spaces, so that no text can end the line early. */
static void clientAppendLine(adminClient *c, char prefix, const char *text) {
    size_t len = strlen(text), i;
    char *line;

    if (c->fd == -1) return;
    if ((line = malloc(len + 3)) == NULL) {
        clientAppend(c, "-ERR out of memory\r\n", 20);
        return;
    }
    line[0] = prefix;
    for (i = 0; i < len; i++)
        line[i + 1] = text[i] == '\r' || text[i] == '\n' ? ' ' : text[i];
    memcpy(line + len + 1, "\r\n", 2);
    clientAppend(c, line, len + 3);
    free(line);
}

/* Appends "<prefix><n>\r\n", the header of integers, bulks and arrays. */
static void clientAppendNumber(adminClient *c, char prefix, long long n) {
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%c%lld\r\n", prefix, n);

    clientAppend(c, buf, (size_t)len);
}

/* --------------------------------------------------------------- replies */

/* "+OK": 'status' without the '+'. */
void adminReplyStatus(adminClient *c, const char *status) {
    clientAppendLine(c, '+', status);
}

/* The full text after '-', error code first ("ERR no such group 'x'"); cut
 * to ADMIN_MAX_ERROR bytes. */
void adminReplyError(adminClient *c, const char *fmt, ...) {
    char text[ADMIN_MAX_ERROR];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    clientAppendLine(c, '-', text);
}

void adminReplyInteger(adminClient *c, long long v) {
    clientAppendNumber(c, ':', v);
}

void adminReplyBulk(adminClient *c, const char *s, size_t len) {
    clientAppendNumber(c, '$', (long long)len);
    clientAppend(c, s, len);
    clientAppend(c, "\r\n", 2);
}

void adminReplyBulkCString(adminClient *c, const char *s) {
    adminReplyBulk(c, s, strlen(s));
}

/* The null bulk string, $-1. */
void adminReplyNull(adminClient *c) {
    clientAppend(c, "$-1\r\n", 5);
}

/* The header of an array of 'n' elements; the command writes them next. */
void adminReplyArray(adminClient *c, long long n) {
    clientAppendNumber(c, '*', n);
}

/* Copies a hiredis reply of any type, nested arrays included, so that a
 * command passes on what Redis answered. A nil (bulk or array) becomes $-1:
 * hiredis 0.14 does not tell them apart. */
void adminReplyRedis(adminClient *c, const struct redisReply *r) {
    size_t i;

    switch (r->type) {
    case REDIS_REPLY_STRING:
        adminReplyBulk(c, r->str, r->len);
        break;
    case REDIS_REPLY_STATUS:
        clientAppendLine(c, '+', r->str);
        break;
    case REDIS_REPLY_ERROR:
        clientAppendLine(c, '-', r->str);
        break;
    case REDIS_REPLY_INTEGER:
        adminReplyInteger(c, r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        adminReplyArray(c, (long long)r->elements);
        for (i = 0; i < r->elements; i++)
            adminReplyRedis(c, r->element[i]);
        break;
    default:
        adminReplyNull(c);
        break;
    }
}

/* Ends the command: its reply is complete. Then the client's next request
 * is served. Frees the client if it was closed meanwhile. */
void adminCommandDone(adminClient *c) {
    free(c->argv);
    free(c->argvlen);
    c->argv = NULL;
    c->argvlen = NULL;
    freeReplyObject(c->request);
    c->request = NULL;
    c->busy = 0;
    if (c->processing) return;      /* clientProcessInput() carries on */
    if (c->fd == -1) {
        clientFree(c);
        return;
    }
    clientProcessInput(c);
}

/* Closes the connection once the current reply is written (SHUTDOWN). */
void adminCloseAfterReply(adminClient *c) {
    c->close_after_reply = 1;
}

/* -------------------------------------------------------------- commands */

/* Writes the first ADMIN_NAME_SHOWN bytes of a client-sent name into 'buf'
 * as it is safe to show: bytes outside printable ASCII, '\'' and '\\' as
 * \xHH, "..." when cut. */
static void nameRepr(char *buf, const char *name, size_t len) {
    size_t n = 0, i;

    for (i = 0; i < len && i < ADMIN_NAME_SHOWN; i++) {
        unsigned char ch = (unsigned char)name[i];

        if (ch < 0x20 || ch > 0x7e || ch == '\'' || ch == '\\')
            n += (size_t)sprintf(buf + n, "\\x%02x", ch);
        else
            buf[n++] = (char)ch;
    }
    if (i < len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
}

/* Compares a password the client sent with the configured one in a time
 * that depends only on the configured one's length. Returns 1 on a match. */
static int passwordMatches(const char *sent, size_t sentlen,
                           const char *password) {
    size_t len = strlen(password), i;
    unsigned char diff = sentlen != len;

    for (i = 0; i < len; i++)
        diff |= (unsigned char)((i < sentlen ? sent[i] : 0) ^ password[i]);
    return diff == 0;
}

/* AUTH password, or Redis 6's AUTH default password. */
void adminAuthCommand(adminClient *c, int argc, char **argv,
                      size_t *argvlen, void *privdata) {
    const char *password = c->server->password;
    int ok;

    UNUSED(privdata);
    if (password == NULL) {
        adminReplyError(c, "ERR AUTH <password> called without any password "
                        "configured for the default user. Are you sure your "
                        "configuration is correct?");
    } else {
        ok = passwordMatches(argv[argc - 1], argvlen[argc - 1], password);
        if (argc == 3 && (argvlen[1] != 7 || memcmp(argv[1], "default", 7)))
            ok = 0;
        if (ok) {
            c->authenticated = 1;
            adminReplyStatus(c, "OK");
        } else {
            adminReplyError(c, "WRONGPASS invalid username-password pair or "
                            "user is disabled.");
        }
    }
    adminCommandDone(c);
}

void adminHelpCommand(adminClient *c, int argc, char **argv,
                      size_t *argvlen, void *privdata) {
    const adminCommand *cmd;
    long long n = 0;

    UNUSED(argc);
    UNUSED(argv);
    UNUSED(argvlen);
    UNUSED(privdata);
    for (cmd = c->server->table; cmd->name != NULL; cmd++) n++;
    adminReplyArray(c, n);
    for (cmd = c->server->table; cmd->name != NULL; cmd++)
        adminReplyBulkCString(c, cmd->help);
    adminCommandDone(c);
}

/* Returns the entry of 'table' named 'name' ('len' bytes), or NULL. */
static const adminCommand *commandFind(const adminCommand *table,
                                       const char *name, size_t len) {
    const adminCommand *cmd;

    for (cmd = table; cmd->name != NULL; cmd++)
        if (strlen(cmd->name) == len && strcasecmp(cmd->name, name) == 0)
            return cmd;
    return NULL;
}

/* Serves one request: the NOAUTH gate (AUTH passes it), the table's
 * command with its arity checked. Takes 'request'. */
static void clientCall(adminClient *c, redisReply *request) {
    adminServer *s = c->server;
    const adminCommand *cmd;
    char shown[ADMIN_NAME_SHOWN * 4 + 4];
    int argc = (int)request->elements, i;

    c->request = request;
    c->busy = 1;
    c->argv = malloc(sizeof(char *) * (size_t)argc);
    c->argvlen = malloc(sizeof(size_t) * (size_t)argc);
    if (c->argv == NULL || c->argvlen == NULL) {
        logMsg(LOG_ERROR, "admin: out of memory for a request from %s",
               c->addr);
        clientClose(c);
        adminCommandDone(c);
        return;
    }
    for (i = 0; i < argc; i++) {
        c->argv[i] = request->element[i]->str;
        c->argvlen[i] = request->element[i]->len;
    }

    cmd = commandFind(s->table, c->argv[0], c->argvlen[0]);
    if (s->password != NULL && !c->authenticated &&
        (cmd == NULL || cmd->proc != adminAuthCommand)) {
        adminReplyError(c, "NOAUTH Authentication required.");
        adminCommandDone(c);
        return;
    }
    if (cmd == NULL) {
        nameRepr(shown, c->argv[0], c->argvlen[0]);
        adminReplyError(c, "ERR unknown command '%s'", shown);
        adminCommandDone(c);
        return;
    }
    if (argc < cmd->min_args ||
        (cmd->max_args >= 0 && argc > cmd->max_args)) {
        adminReplyError(c, "ERR wrong number of arguments for '%s' command",
                        cmd->name);
        adminCommandDone(c);
        return;
    }
    cmd->proc(c, argc, c->argv, c->argvlen, s->privdata);
}

/* Serves the complete requests the reader holds, one at a time, until one
 * stays busy; after the last one, a framing error is the final reply. Then
 * writes the replies. May free 'c'. */
static void clientProcessInput(adminClient *c) {
    void *request;

    c->processing = 1;
    while (c->fd != -1 && !c->busy && !c->close_after_reply) {
        if (c->olen - c->opos > ADMIN_MAX_BACKLOG) {
            c->throttled = 1;
            break;
        }
        if (redisReaderGetReply(c->reader, &request) != REDIS_OK) {
            /* Not expected after the scanner; out of memory, say. */
            adminReplyError(c, "ERR Protocol error: %s", c->reader->errstr);
            c->close_after_reply = 1;
        } else if (request != NULL) {
            clientCall(c, request);
        } else {
            if (c->scan.err[0] != '\0') {
                logMsg(LOG_WARN, "admin: protocol error from %s: %s",
                       c->addr, c->scan.err);
                adminReplyError(c, "ERR Protocol error: %s", c->scan.err);
                c->close_after_reply = 1;
            }
            break;
        }
    }
    c->processing = 0;
    if (c->fd == -1) {
        if (!c->busy) clientFree(c);
        return;
    }
    clientFlush(c);
}

static void clientReadable(evutil_socket_t fd, short what, void *arg) {
    adminClient *c = arg;
    char buf[ADMIN_READ_CHUNK];
    ssize_t n;
    size_t good;

    UNUSED(what);
    n = read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        clientClose(c);             /* EOF or a reset: the peer is gone */
        return;
    }
    good = scanRequests(&c->scan, buf, (size_t)n);
    if (good > 0 && redisReaderFeed(c->reader, buf, good) != REDIS_OK) {
        logMsg(LOG_ERROR, "admin: out of memory for a request from %s",
               c->addr);
        clientClose(c);
        return;
    }
    clientProcessInput(c);
}

static void clientWritable(evutil_socket_t fd, short what, void *arg) {
    UNUSED(fd);
    UNUSED(what);
    clientFlush(arg);
}

/* Writes the peer's address as "ip:port" or "[ip]:port". */
static void peerName(char *buf, size_t size, const struct sockaddr *sa,
                     socklen_t salen) {
    char host[64], port[8];

    if (getnameinfo(sa, salen, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(buf, size, "?");
    else if (strchr(host, ':') != NULL)
        snprintf(buf, size, "[%s]:%s", host, port);
    else
        snprintf(buf, size, "%s:%s", host, port);
}

/* Makes a client of an accepted socket. Returns it, or NULL when memory or
 * libevent fails (the caller closes the socket). */
static adminClient *clientCreate(adminServer *s, int fd) {
    adminClient *c = calloc(1, sizeof(*c));

    if (c == NULL) return NULL;
    c->fd = fd;
    c->reader = redisReaderCreate();
    c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, clientReadable, c);
    c->wev = event_new(s->base, fd, EV_WRITE | EV_PERSIST, clientWritable,
                       c);
    if (c->reader == NULL || c->rev == NULL || c->wev == NULL ||
        event_add(c->rev, NULL) != 0) {
        if (c->reader != NULL) redisReaderFree(c->reader);
        if (c->rev != NULL) event_free(c->rev);
        if (c->wev != NULL) event_free(c->wev);
        free(c);
        return NULL;
    }
    c->reading = 1;
    c->server = s;
    c->next = s->clients;
    if (s->clients != NULL) s->clients->prev = c;
    s->clients = c;
    s->nclients++;
    return c;
}

/* ---------------------------------------------------------------- server */

/* Non-blocking and close-on-exec. Returns 0, or -1 with errno set. */
static int socketSetup(int fd) {
    int flags = fcntl(fd, F_GETFL);

    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
        return -1;
    if ((flags = fcntl(fd, F_GETFD)) == -1 ||
        fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == -1)
        return -1;
    return 0;
}

/* Starts or stops accepting connections. */
static void serverWatch(adminServer *s, int on) {
    int i;

    for (i = 0; i < s->nlisteners; i++) {
        if (!on) event_del(s->listeners[i].ev);
        else if (event_add(s->listeners[i].ev, NULL) != 0)
            logMsg(LOG_ERROR, "admin: cannot watch the listening socket: "
                   "no new clients");
    }
}

static void serverResume(evutil_socket_t fd, short what, void *arg) {
    UNUSED(fd);
    UNUSED(what);
    serverWatch(arg, 1);
}

static void serverAccept(evutil_socket_t lfd, short what, void *arg) {
    static const char full[] = "-ERR max number of clients reached\r\n";
    adminServer *s = arg;
    struct sockaddr_storage sa;
    socklen_t salen;
    char addr[ADMIN_ADDR_SIZE];
    adminClient *c;
    int i, fd, on = 1;

    UNUSED(what);
    for (i = 0; i < ADMIN_ACCEPTS_PER_CALL; i++) {
        salen = sizeof(sa);
        fd = accept(lfd, (struct sockaddr *)&sa, &salen);
        if (fd == -1) {
            int error = errno;

            if (error == EINTR || error == ECONNABORTED) continue;
            if (error == EAGAIN || error == EWOULDBLOCK) return;
            if (!s->accept_failing)
                logMsg(LOG_WARN, "admin: accept: %s", strerror(error));
            s->accept_failing = 1;
            /* Out of descriptors: the listener stays readable, so waiting
             * on it would spin; try again a little later. */
            if (error == EMFILE || error == ENFILE || error == ENOBUFS ||
                error == ENOMEM) {
                struct timeval tv = {0, ADMIN_ACCEPT_PAUSE_MS * 1000};

                serverWatch(s, 0);
                evtimer_add(s->resume_ev, &tv);
            }
            return;
        }
        s->accept_failing = 0;
        peerName(addr, sizeof(addr), (struct sockaddr *)&sa, salen);
        if (socketSetup(fd) == -1) {
            logMsg(LOG_WARN, "admin: client %s: %s", addr, strerror(errno));
            close(fd);
            continue;
        }
        /* Replies are small and one at a time: Nagle would only delay
         * them. Not fatal if refused. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        if (s->nclients >= ADMIN_MAX_CLIENTS) {
            logMsg(LOG_WARN, "admin: refused client %s: max number of "
                   "clients (%d) reached", addr, ADMIN_MAX_CLIENTS);
            (void)send(fd, full, sizeof(full) - 1, MSG_NOSIGNAL);
            close(fd);
            continue;
        }
        if ((c = clientCreate(s, fd)) == NULL) {
            logMsg(LOG_ERROR, "admin: cannot set up client %s", addr);
            close(fd);
            continue;
        }
        memcpy(c->addr, addr, sizeof(addr));
    }
}

/* Writes "admin: cannot listen on HOST:PORT: why" into 'err'. */
static void listenError(char *err, size_t errlen, const char *host,
                        int port, const char *why) {
    if (strchr(host, ':') != NULL)
        snprintf(err, errlen, "admin: cannot listen on [%s]:%d: %s", host,
                 port, why);
    else
        snprintf(err, errlen, "admin: cannot listen on %s:%d: %s", host,
                 port, why);
}

/* Opens a listening socket on 'ai'. Returns it, or -1 with errno set. */
static int listenSocket(const struct addrinfo *ai) {
    int fd, on = 1, saved;

    if ((fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol)) == -1)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
        socketSetup(fd) == -1 || bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
        listen(fd, ADMIN_BACKLOG) == -1) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* The port a bound socket got (what port 0 asked the kernel to pick). */
static int socketPort(int fd) {
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);

    if (getsockname(fd, (struct sockaddr *)&sa, &salen) == -1) return -1;
    if (sa.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return ntohs(((struct sockaddr_in *)&sa)->sin_port);
}

static void setPort(struct sockaddr *sa, int port) {
    if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
}

/* Listens on host:port: every address 'host' resolves to ("localhost" may
 * give ::1 and 127.0.0.1), skipping those the system has no support for
 * when another one works. Port 0 asks for an ephemeral port (adminPort()
 * tells which), the same on every address. 'password' NULL: no AUTH.
 * 'table' ends with an entry whose name is NULL; its procs get 'privdata'.
 * Returns the server, or NULL with 'err' set ("admin: cannot listen on
 * 127.0.0.1:6381: Address already in use"). */
adminServer *adminListen(struct event_base *base, const char *host, int port,
                         const char *password, const adminCommand *table,
                         void *privdata, char *err, size_t errlen) {
    struct addrinfo hints, *res = NULL, *ai;
    const adminCommand *cmd;
    char service[16];
    adminServer *s;
    int rc, fd, n = 0, skipped = 0;

    if (port < 0 || port > 65535) {
        listenError(err, errlen, host, port, "invalid port");
        return NULL;
    }
    if (password != NULL &&
        ((cmd = commandFind(table, "auth", 4)) == NULL ||
         cmd->proc != adminAuthCommand)) {
        /* nobody could get past NOAUTH */
        listenError(err, errlen, host, port, "a password but no AUTH");
        return NULL;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    if ((rc = getaddrinfo(host, service, &hints, &res)) != 0) {
        listenError(err, errlen, host, port,
                    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return NULL;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) n++;

    if ((s = calloc(1, sizeof(*s))) == NULL ||
        (s->listeners = calloc((size_t)n, sizeof(*s->listeners))) == NULL ||
        (password != NULL && (s->password = strdup(password)) == NULL) ||
        (s->resume_ev = evtimer_new(base, serverResume, s)) == NULL) {
        listenError(err, errlen, host, port, "out of memory");
        goto fail;
    }
    s->base = base;
    s->table = table;
    s->privdata = privdata;

    for (ai = res; ai != NULL; ai = ai->ai_next) {
        adminListener *l = &s->listeners[s->nlisteners];

        if (s->port != 0) setPort(ai->ai_addr, s->port);
        if ((fd = listenSocket(ai)) == -1) {
            if (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT) {
                if (skipped++ == 0) rc = errno;
                continue;
            }
            listenError(err, errlen, host, port, strerror(errno));
            goto fail;
        }
        l->fd = fd;
        l->ev = event_new(base, fd, EV_READ | EV_PERSIST, serverAccept, s);
        if (l->ev == NULL || event_add(l->ev, NULL) != 0) {
            if (l->ev != NULL) event_free(l->ev);
            close(fd);
            listenError(err, errlen, host, port, "cannot watch the socket");
            goto fail;
        }
        s->nlisteners++;
        if (s->port == 0 && (s->port = socketPort(fd)) == -1) {
            listenError(err, errlen, host, port, strerror(errno));
            goto fail;
        }
    }
    if (s->nlisteners == 0) {
        listenError(err, errlen, host, port, strerror(rc));
        goto fail;
    }
    freeaddrinfo(res);
    return s;

fail:
    freeaddrinfo(res);
    adminClose(s);
    return NULL;
}

/* The port it listens on: the one asked for, or the one port 0 got. */
int adminPort(const adminServer *s) {
    return s->port;
}

/* Connected clients, the one running a command included. */
int adminClientCount(const adminServer *s) {
    return s->nclients;
}

/* Stops listening and closes every client. Replies already complete get
 * one attempt to be written (SHUTDOWN's +OK, when the command calls this
 * after adminCommandDone()). Commands still running keep their adminClient
 * until they call adminCommandDone(), whose reply is then dropped. */
void adminClose(adminServer *s) {
    int i;

    if (s == NULL) return;
    for (i = 0; i < s->nlisteners; i++) {
        event_free(s->listeners[i].ev);
        close(s->listeners[i].fd);
    }
    while (s->clients != NULL) {
        adminClient *c = s->clients;

        if (!c->busy && c->opos < c->olen)
            (void)send(c->fd, c->obuf + c->opos, c->olen - c->opos,
                       MSG_NOSIGNAL);
        clientClose(c);
    }
    if (s->resume_ev != NULL) event_free(s->resume_ev);
    free(s->listeners);
    free(s->password);
    free(s);
}
