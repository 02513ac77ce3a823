/* Unit tests of admin.c: a server on a real event loop and loopback port,
 * plain client sockets writing raw bytes, and the exact reply bytes. */

#define _POSIX_C_SOURCE 200809L     /* mkstemp, MSG_NOSIGNAL */

#include "admin.h"
#include "log.h"
#include "util.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#define WAIT_MS 5000            /* bound of every wait (valgrind is slow) */

static struct event_base *base;
static adminServer *srv;
static int timers;              /* "later" replies not sent yet */

/* ------------------------------------------------------------- commands */

static void pingCommand(adminClient *c, int argc, char **argv,
                        size_t *argvlen, void *privdata) {
    (void)privdata;
    if (argc == 1) adminReplyStatus(c, "PONG");
    else if (argc == 2) adminReplyBulk(c, argv[1], argvlen[1]);
    else adminReplyError(c, "ERR wrong number of arguments for 'ping' "
                         "command");
    adminCommandDone(c);
}

static void echoCommand(adminClient *c, int argc, char **argv,
                        size_t *argvlen, void *privdata) {
    (void)argc;
    (void)privdata;
    adminReplyBulk(c, argv[1], argvlen[1]);
    adminCommandDone(c);
}

/* ARGS a b ...: how many arguments came, the name included. */
static void argsCommand(adminClient *c, int argc, char **argv,
                        size_t *argvlen, void *privdata) {
    (void)argv;
    (void)argvlen;
    (void)privdata;
    adminReplyInteger(c, argc);
    adminCommandDone(c);
}

typedef struct laterCall {
    adminClient *c;
    char *text;                 /* the client's argv[2]: valid until done */
    size_t len;
    struct event *ev;
} laterCall;

static void laterFire(evutil_socket_t fd, short what, void *arg) {
    laterCall *l = arg;

    (void)fd;
    (void)what;
    adminReplyBulk(l->c, l->text, l->len);
    adminCommandDone(l->c);
    event_free(l->ev);
    free(l);
    timers--;
}

/* LATER ms text: replies text after ms milliseconds, from a timer. */
static void laterCommand(adminClient *c, int argc, char **argv,
                         size_t *argvlen, void *privdata) {
    laterCall *l = malloc(sizeof(*l));
    long ms = atol(argv[1]);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    (void)argc;
    (void)privdata;
    ck_assert_ptr_nonnull(l);
    l->c = c;
    l->text = argv[2];
    l->len = argvlen[2];
    l->ev = evtimer_new(base, laterFire, l);
    ck_assert_ptr_nonnull(l->ev);
    ck_assert_int_eq(evtimer_add(l->ev, &tv), 0);
    timers++;
}

/* RELAY resp: parses resp with hiredis and replies it with
 * adminReplyRedis(). */
static void relayCommand(adminClient *c, int argc, char **argv,
                         size_t *argvlen, void *privdata) {
    redisReader *r = redisReaderCreate();
    void *reply = NULL;

    (void)argc;
    (void)privdata;
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(redisReaderFeed(r, argv[1], argvlen[1]), REDIS_OK);
    ck_assert_int_eq(redisReaderGetReply(r, &reply), REDIS_OK);
    ck_assert_ptr_nonnull(reply);
    adminReplyRedis(c, reply);
    freeReplyObject(reply);
    redisReaderFree(r);
    adminCommandDone(c);
}

/* BIG n: a bulk of n 'x'. */
static void bigCommand(adminClient *c, int argc, char **argv,
                       size_t *argvlen, void *privdata) {
    size_t n = (size_t)atol(argv[1]);
    char *s = malloc(n);

    (void)argc;
    (void)argvlen;
    (void)privdata;
    ck_assert_ptr_nonnull(s);
    memset(s, 'x', n);
    adminReplyBulk(c, s, n);
    free(s);
    adminCommandDone(c);
}

/* COUNT: adminClientCount(), the server reached through privdata. */
static void countCommand(adminClient *c, int argc, char **argv,
                         size_t *argvlen, void *privdata) {
    (void)argc;
    (void)argv;
    (void)argvlen;
    adminReplyInteger(c, adminClientCount(*(adminServer **)privdata));
    adminCommandDone(c);
}

/* LIST: every reply type in one array. */
static void listCommand(adminClient *c, int argc, char **argv,
                        size_t *argvlen, void *privdata) {
    (void)argc;
    (void)argv;
    (void)argvlen;
    (void)privdata;
    adminReplyArray(c, 5);
    adminReplyInteger(c, -42);
    adminReplyNull(c);
    adminReplyBulkCString(c, "abc");
    adminReplyStatus(c, "st\r\natus");
    adminReplyError(c, "ERR bad\r\nthing %d", 5);
    adminCommandDone(c);
}

static void byeCommand(adminClient *c, int argc, char **argv,
                       size_t *argvlen, void *privdata) {
    (void)argc;
    (void)argv;
    (void)argvlen;
    (void)privdata;
    adminReplyStatus(c, "BYE");
    adminCloseAfterReply(c);
    adminCommandDone(c);
}

/* STOP: what SHUTDOWN does, closing the whole server after its reply. */
static void stopCommand(adminClient *c, int argc, char **argv,
                        size_t *argvlen, void *privdata) {
    (void)argc;
    (void)argv;
    (void)argvlen;
    (void)privdata;
    adminReplyStatus(c, "OK");
    adminCommandDone(c);
    adminClose(srv);
    srv = NULL;
}

/* HALT: closes the server before its reply, which is dropped. */
static void haltCommand(adminClient *c, int argc, char **argv,
                        size_t *argvlen, void *privdata) {
    (void)argc;
    (void)argv;
    (void)argvlen;
    (void)privdata;
    adminClose(srv);
    srv = NULL;
    adminReplyStatus(c, "OK");
    adminCommandDone(c);
}

static const adminCommand table[] = {
    {"ping", 1, -1, "PING", pingCommand},
    {"auth", 2, 3, "AUTH password", adminAuthCommand},
    {"echo", 2, 2, "ECHO text", echoCommand},
    {"args", 2, -1, "ARGS a b ...", argsCommand},
    {"later", 3, 3, "LATER ms text", laterCommand},
    {"relay", 2, 2, "RELAY resp", relayCommand},
    {"big", 2, 2, "BIG n", bigCommand},
    {"count", 1, 1, "COUNT", countCommand},
    {"list", 1, 1, "LIST", listCommand},
    {"bye", 1, 1, "BYE", byeCommand},
    {"stop", 1, 1, "STOP", stopCommand},
    {"halt", 1, 1, "HALT", haltCommand},
    {"help", 1, 1, "HELP", adminHelpCommand},
    {NULL, 0, 0, NULL, NULL}
};

/* -------------------------------------------------------------- helpers */

/* Runs the loop for about 'ms' milliseconds (0: what is ready now). */
static void pump(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Runs the loop until *value == want, failing after WAIT_MS. */
static void waitInt(const int *value, int want) {
    long long end = monotonicMs() + WAIT_MS;

    while (*value != want && monotonicMs() < end) pump(1);
    ck_assert_int_eq(*value, want);
}

static void waitClients(int want) {
    long long end = monotonicMs() + WAIT_MS;

    while (adminClientCount(srv) != want && monotonicMs() < end) pump(1);
    ck_assert_int_eq(adminClientCount(srv), want);
}

static void start(const char *password) {
    char err[256];

    srv = adminListen(base, "127.0.0.1", 0, password, table, &srv, err,
                      sizeof(err));
    ck_assert_msg(srv != NULL, "%s", err);
    ck_assert_int_gt(adminPort(srv), 0);
}

/* A client connected to 'ip':'port', non-blocking once connected. */
static int connectTo(int family, const char *ip, int port) {
    struct sockaddr_storage sa;
    socklen_t salen;
    int fd = socket(family, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof(sa));
    if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;

        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        ck_assert_int_eq(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
        salen = sizeof(*in6);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&sa;

        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        ck_assert_int_eq(inet_pton(AF_INET, ip, &in->sin_addr), 1);
        salen = sizeof(*in);
    }
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, salen), 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    return fd;
}

static int cli(void) {
    return connectTo(AF_INET, "127.0.0.1", adminPort(srv));
}

/* Writes 'len' bytes, running the loop while the socket is full. Returns 0,
 * or -1 when the server closed the connection meanwhile. */
static int cliSend(int fd, const char *buf, size_t len) {
    long long end = monotonicMs() + WAIT_MS;

    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            ck_assert_msg(monotonicMs() < end, "send blocked");
            pump(1);
        } else {
            return -1;
        }
    }
    pump(0);
    return 0;
}

#define SEND(fd, lit) ck_assert_int_eq(cliSend(fd, lit, sizeof(lit) - 1), 0)

/* Sends a request made by hiredis from a format ("echo %s", arg). */
static void sendf(int fd, const char *fmt, ...) {
    char *cmd;
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    ck_assert_int_gt(len, 0);
    ck_assert_int_eq(cliSend(fd, cmd, (size_t)len), 0);
    redisFreeCommand(cmd);
}

/* Reads until 'want' bytes came, the peer closed or WAIT_MS passed.
 * Returns the bytes read; *closed tells whether the peer closed. */
static size_t cliRead(int fd, char *buf, size_t want, int *closed) {
    long long end = monotonicMs() + WAIT_MS;
    size_t got = 0;

    *closed = 0;
    while (got < want && monotonicMs() < end) {
        ssize_t n = recv(fd, buf + got, want - got, 0);

        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            *closed = 1;
            break;
        } else {
            pump(1);
        }
    }
    return got;
}

/* Shows bytes in a failure message. */
static const char *repr(const char *s, size_t len) {
    static char buf[4096];
    size_t n = 0, i;

    for (i = 0; i < len && n < sizeof(buf) - 8; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            buf[n++] = (char)ch;
        else
            n += (size_t)snprintf(buf + n, 5, "\\x%02x", ch);
    }
    buf[n] = '\0';
    return buf;
}

/* Asserts that the next bytes from the server are exactly 'expected'. */
static void expectReply(int fd, const char *expected, size_t len) {
    char *buf = malloc(len + 1);
    size_t got;
    int closed;

    ck_assert_ptr_nonnull(buf);
    got = cliRead(fd, buf, len, &closed);
    ck_assert_msg(got == len && memcmp(buf, expected, len) == 0,
                  "expected \"%s\"", repr(expected, len));
    free(buf);
}

#define EXPECT(fd, lit) expectReply(fd, lit, sizeof(lit) - 1)

/* Asserts that nothing comes for 'ms' milliseconds. */
static void expectNothing(int fd, int ms) {
    char ch;
    long long end = monotonicMs() + ms;

    do {
        pump(1);
        ck_assert_int_eq(recv(fd, &ch, 1, 0), -1);
        ck_assert_int_eq(errno, EAGAIN);
    } while (monotonicMs() < end);
}

/* Asserts that the server closes the connection with nothing more sent,
 * and closes the client's end. */
static void expectClosed(int fd) {
    char buf[64];
    int closed;
    size_t got = cliRead(fd, buf, sizeof(buf), &closed);

    ck_assert_msg(got == 0, "expected the end, got \"%s\"", repr(buf, got));
    ck_assert_msg(closed, "the connection is still open");
    close(fd);
}

/* ------------------------------------------------------------- fixture */

static void setup(void) {
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    srv = NULL;
    timers = 0;
}

static void teardown(void) {
    adminClose(srv);
    srv = NULL;
    /* Timers of LATER still hold their clients: let them finish. */
    waitInt(&timers, 0);
    event_base_free(base);
}

/* ------------------------------------------------------------- commands */

START_TEST(test_ping) {
    int fd;

    start(NULL);
    fd = cli();
    SEND(fd, "*1\r\n$4\r\nPING\r\n");
    EXPECT(fd, "+PONG\r\n");
    SEND(fd, "*2\r\n$4\r\nping\r\n$5\r\nhello\r\n");
    EXPECT(fd, "$5\r\nhello\r\n");
    SEND(fd, "*1\r\n$4\r\npInG\r\n");
    EXPECT(fd, "+PONG\r\n");
    SEND(fd, "*3\r\n$4\r\nPING\r\n$1\r\na\r\n$1\r\nb\r\n");
    EXPECT(fd, "-ERR wrong number of arguments for 'ping' command\r\n");
    expectNothing(fd, 20);
    close(fd);
}
END_TEST

START_TEST(test_binary_arguments) {
    int fd;

    start(NULL);
    fd = cli();
    SEND(fd, "*2\r\n$4\r\necho\r\n$7\r\na\0b\r\n\r\xff\r\n");
    EXPECT(fd, "$7\r\na\0b\r\n\r\xff\r\n");
    SEND(fd, "*2\r\n$4\r\necho\r\n$0\r\n\r\n");
    EXPECT(fd, "$0\r\n\r\n");
    /* A NUL in the name: not "echo". */
    SEND(fd, "*2\r\n$5\r\necho\0\r\n$1\r\nx\r\n");
    EXPECT(fd, "-ERR unknown command 'echo\\x00'\r\n");
    close(fd);
}
END_TEST

START_TEST(test_reply_types) {
    int fd;

    start(NULL);
    fd = cli();
    sendf(fd, "list");
    EXPECT(fd, "*5\r\n:-42\r\n$-1\r\n$3\r\nabc\r\n+st  atus\r\n"
           "-ERR bad  thing 5\r\n");
    sendf(fd, "args a b c");
    EXPECT(fd, ":4\r\n");
    close(fd);
}
END_TEST

START_TEST(test_reply_redis) {
    static const char *same[] = {
        "*3\r\n$2\r\nid\r\n*3\r\n:-5\r\n+OK\r\n$-1\r\n*0\r\n",
        "-ERR no such key\r\n",
        "+QUEUED\r\n",
        ":9223372036854775807\r\n",
        "$3\r\na\0b\r\n",
        "*2\r\n*1\r\n*1\r\n$0\r\n\r\n*0\r\n",
    };
    const char *argv[2] = {"relay", NULL};
    size_t argvlen[2] = {5, 0};
    char *cmd;
    size_t i;
    int fd, len;

    start(NULL);
    fd = cli();
    for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        argv[1] = same[i];
        argvlen[1] = i == 4 ? 9 : strlen(same[i]);
        len = redisFormatCommandArgv(&cmd, 2, argv, argvlen);
        ck_assert_int_eq(cliSend(fd, cmd, (size_t)len), 0);
        redisFreeCommand(cmd);
        expectReply(fd, same[i], argvlen[1]);
    }
    /* hiredis 0.14 has one nil: a nil array comes out as a nil bulk. */
    sendf(fd, "relay %s", "*-1\r\n");
    EXPECT(fd, "$-1\r\n");
    close(fd);
}
END_TEST

START_TEST(test_unknown_command) {
    char name[101], expected[256];
    int fd;

    start(NULL);
    fd = cli();
    sendf(fd, "foo a b");
    EXPECT(fd, "-ERR unknown command 'foo'\r\n");
    sendf(fd, "ECH x");
    EXPECT(fd, "-ERR unknown command 'ECH'\r\n");
    sendf(fd, "echoo x");
    EXPECT(fd, "-ERR unknown command 'echoo'\r\n");
    SEND(fd, "*1\r\n$8\r\n\x01\x1b[2J'\\\xe9\r\n");
    EXPECT(fd, "-ERR unknown command '\\x01\\x1b[2J\\x27\\x5c\\xe9'\r\n");
    memset(name, 'a', 100);
    name[100] = '\0';
    sendf(fd, "%s", name);
    snprintf(expected, sizeof(expected), "-ERR unknown command '%.64s...'"
             "\r\n", name);
    expectReply(fd, expected, strlen(expected));
    /* Exactly 64 bytes: shown whole. */
    name[64] = '\0';
    sendf(fd, "%s", name);
    snprintf(expected, sizeof(expected), "-ERR unknown command '%s'\r\n",
             name);
    expectReply(fd, expected, strlen(expected));
    close(fd);
}
END_TEST

START_TEST(test_wrong_arity) {
    int fd;

    start(NULL);
    fd = cli();
    sendf(fd, "echo");
    EXPECT(fd, "-ERR wrong number of arguments for 'echo' command\r\n");
    sendf(fd, "ECHO a b");
    EXPECT(fd, "-ERR wrong number of arguments for 'echo' command\r\n");
    sendf(fd, "Args");
    EXPECT(fd, "-ERR wrong number of arguments for 'args' command\r\n");
    sendf(fd, "count x");
    EXPECT(fd, "-ERR wrong number of arguments for 'count' command\r\n");
    sendf(fd, "args x");
    EXPECT(fd, ":2\r\n");
    close(fd);
}
END_TEST

/* HELP: the table's help lines, in its order. */
START_TEST(test_help) {
    static const char expected[] = "*13\r\n"
        "$4\r\nPING\r\n" "$13\r\nAUTH password\r\n"
        "$9\r\nECHO text\r\n" "$12\r\nARGS a b ...\r\n"
        "$13\r\nLATER ms text\r\n" "$10\r\nRELAY resp\r\n"
        "$5\r\nBIG n\r\n" "$5\r\nCOUNT\r\n" "$4\r\nLIST\r\n"
        "$3\r\nBYE\r\n" "$4\r\nSTOP\r\n" "$4\r\nHALT\r\n"
        "$4\r\nHELP\r\n";
    int fd;

    start(NULL);
    fd = cli();
    sendf(fd, "help");
    EXPECT(fd, expected);
    sendf(fd, "help me");
    EXPECT(fd, "-ERR wrong number of arguments for 'help' command\r\n");
    close(fd);
}
END_TEST

/* ----------------------------------------------------------------- AUTH */

#define NOAUTH "-NOAUTH Authentication required.\r\n"
#define WRONGPASS "-WRONGPASS invalid username-password pair or user is " \
                  "disabled.\r\n"
#define AUTH_ARITY "-ERR wrong number of arguments for 'auth' command\r\n"

START_TEST(test_auth) {
    int fd, fd2, fd3;

    start("s3cret");
    fd = cli();
    sendf(fd, "ping");
    EXPECT(fd, NOAUTH);
    sendf(fd, "foo");
    EXPECT(fd, NOAUTH);
    sendf(fd, "echo");
    EXPECT(fd, NOAUTH);
    sendf(fd, "auth");
    EXPECT(fd, AUTH_ARITY);
    sendf(fd, "auth a b c");
    EXPECT(fd, AUTH_ARITY);
    sendf(fd, "auth wrong");
    EXPECT(fd, WRONGPASS);
    sendf(fd, "auth s3cre");
    EXPECT(fd, WRONGPASS);
    sendf(fd, "auth s3cret1");
    EXPECT(fd, WRONGPASS);
    sendf(fd, "auth %s", "");
    EXPECT(fd, WRONGPASS);
    sendf(fd, "auth %b", "s3cret\0", (size_t)7);
    EXPECT(fd, WRONGPASS);
    sendf(fd, "auth bob s3cret");
    EXPECT(fd, WRONGPASS);
    sendf(fd, "ping");
    EXPECT(fd, NOAUTH);
    sendf(fd, "AUTH s3cret");
    EXPECT(fd, "+OK\r\n");
    sendf(fd, "ping");
    EXPECT(fd, "+PONG\r\n");
    /* A failed AUTH later does not log the client out. */
    sendf(fd, "auth nope");
    EXPECT(fd, WRONGPASS);
    sendf(fd, "echo x");
    EXPECT(fd, "$1\r\nx\r\n");

    /* Redis 6 form; and authentication is per connection. */
    fd2 = cli();
    fd3 = cli();
    sendf(fd2, "auth default s3cret");
    EXPECT(fd2, "+OK\r\n");
    sendf(fd2, "ping");
    EXPECT(fd2, "+PONG\r\n");
    sendf(fd3, "ping");
    EXPECT(fd3, NOAUTH);
    close(fd);
    close(fd2);
    close(fd3);
}
END_TEST

START_TEST(test_auth_without_password) {
    static const char noPassword[] = "-ERR AUTH <password> called without any"
        " password configured for the default user. Are you sure your "
        "configuration is correct?\r\n";
    int fd;

    start(NULL);
    fd = cli();
    sendf(fd, "auth x");
    EXPECT(fd, noPassword);
    sendf(fd, "auth default x");
    EXPECT(fd, noPassword);
    sendf(fd, "auth");
    EXPECT(fd, AUTH_ARITY);
    sendf(fd, "ping");
    EXPECT(fd, "+PONG\r\n");
    close(fd);
}
END_TEST

/* --------------------------------------------------------- the protocol */

#define BAD(in, why) {in, sizeof(in) - 1, "-ERR Protocol error: " why "\r\n"}

static const struct {
    const char *in;
    size_t len;
    const char *reply;
} malformed[] = {
    BAD("PING\r\n", "inline commands are not supported"),
    BAD("ping hello\r\n", "inline commands are not supported"),
    BAD("+PING\r\n", "expected '*', got '+'"),
    BAD("$4\r\nPING\r\n", "expected '*', got '$'"),
    BAD("\r\n", "expected '*', got '\\x0d'"),
    BAD("\0", "expected '*', got '\\x00'"),
    BAD("*1\r\n:5\r\n", "expected '$', got ':'"),
    BAD("*2\r\n$4\r\necho\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'"),
    BAD("*2\r\n$4\r\necho\r\n+a\r\n", "expected '$', got '+'"),
    BAD("*2\r\n$4\r\necho\r\n$-1\r\n", "invalid bulk length"),
    BAD("*x\r\n", "invalid multibulk length"),
    BAD("*-1\r\n", "invalid multibulk length"),
    BAD("*+1\r\n", "invalid multibulk length"),
    BAD("*\r\n", "invalid multibulk length"),
    BAD("*1\n", "invalid multibulk length"),
    BAD("*1\r\r", "invalid multibulk length"),
    BAD("*1 \r\n", "invalid multibulk length"),
    BAD("*0\r\n", "empty request"),
    BAD("*1025\r\n", "more than 1024 arguments"),
    BAD("*99999999999999999999999\r\n", "more than 1024 arguments"),
    BAD("*1\r\n$-1\r\n", "invalid bulk length"),
    BAD("*1\r\n$abc\r\n", "invalid bulk length"),
    BAD("*1\r\n$\r\n", "invalid bulk length"),
    BAD("*1\r\n$4 \r\n", "invalid bulk length"),
    BAD("*1\r\n$4\n", "invalid bulk length"),
    BAD("*1\r\n$99999999999999999999999\r\n", "request larger than 65536 "
        "bytes"),
    BAD("*1\r\n$65536\r\n", "request larger than 65536 bytes"),
    BAD("*1\r\n$4\r\nPINGxx", "bulk string not followed by CRLF"),
    BAD("*1\r\n$4\r\nPING\r\r", "bulk string not followed by CRLF"),
    BAD("*1\r\n$4\r\nPING\n", "bulk string not followed by CRLF"),
    BAD("*1\r\n$0\r\n\n", "bulk string not followed by CRLF"),
};

START_TEST(test_malformed) {
    int fd;

    start(NULL);
    fd = cli();
    ck_assert_int_eq(cliSend(fd, malformed[_i].in, malformed[_i].len), 0);
    expectReply(fd, malformed[_i].reply, strlen(malformed[_i].reply));
    expectClosed(fd);
    waitClients(0);
}
END_TEST

/* Requests before a framing error are answered, in order, then the error
 * (the bytes after it are never parsed). */
START_TEST(test_error_after_pipeline) {
    int fd;

    start(NULL);
    fd = cli();
    SEND(fd, "*1\r\n$4\r\nPING\r\n*3\r\n$5\r\nlater\r\n$2\r\n20\r\n$1\r\na\r\n"
         "*2\r\n$4\r\necho\r\n$1\r\nb\r\nGARBAGE\r\n*1\r\n$4\r\nPING\r\n");
    EXPECT(fd, "+PONG\r\n$1\r\na\r\n$1\r\nb\r\n-ERR Protocol error: "
           "inline commands are not supported\r\n");
    expectClosed(fd);
}
END_TEST

/* Sends 'len' bytes of 'x' as ECHO's argument. Returns the request size. */
static size_t sendEcho(int fd, size_t len, int *sent) {
    char head[64];
    char *req;
    int n = snprintf(head, sizeof(head), "*2\r\n$4\r\necho\r\n$%zu\r\n", len);
    size_t total = (size_t)n + len + 2;

    req = malloc(total);
    ck_assert_ptr_nonnull(req);
    memcpy(req, head, (size_t)n);
    memset(req + n, 'x', len);
    memcpy(req + n + len, "\r\n", 2);
    *sent = cliSend(fd, req, total);
    free(req);
    return total;
}

START_TEST(test_request_size) {
    char head[32];
    char *reply;
    int fd, sent, n;
    size_t len;

    start(NULL);

    /* Exactly ADMIN_MAX_REQUEST bytes: served. */
    fd = cli();
    len = ADMIN_MAX_REQUEST - 24;
    ck_assert_uint_eq(sendEcho(fd, len, &sent), ADMIN_MAX_REQUEST);
    ck_assert_int_eq(sent, 0);
    n = snprintf(head, sizeof(head), "$%zu\r\n", len);
    reply = malloc((size_t)n + len + 2);
    ck_assert_ptr_nonnull(reply);
    memcpy(reply, head, (size_t)n);
    memset(reply + n, 'x', len);
    memcpy(reply + n + len, "\r\n", 2);
    expectReply(fd, reply, (size_t)n + len + 2);
    free(reply);

    /* One byte more: refused, without waiting for the bytes. */
    sendEcho(fd, len + 1, &sent);
    EXPECT(fd, "-ERR Protocol error: request larger than 65536 bytes\r\n");
    expectClosed(fd);

    /* 100 KiB in one argument. */
    fd = cli();
    sendEcho(fd, 100 * 1024, &sent);
    EXPECT(fd, "-ERR Protocol error: request larger than 65536 bytes\r\n");
    expectClosed(fd);

    /* 100 KiB in many small ones: caught by the running total. */
    fd = cli();
    {
        static char req[110 * 1024];
        size_t off = (size_t)snprintf(req, sizeof(req), "*1000\r\n");
        int i;

        for (i = 0; i < 1000; i++) {
            memcpy(req + off, "$100\r\n", 6);
            memset(req + off + 6, 'y', 100);
            memcpy(req + off + 106, "\r\n", 2);
            off += 108;
        }
        cliSend(fd, req, off);
    }
    EXPECT(fd, "-ERR Protocol error: request larger than 65536 bytes\r\n");
    expectClosed(fd);
    waitClients(0);
}
END_TEST

START_TEST(test_max_arguments) {
    static char req[16 * 1024];
    size_t off;
    int fd, i;

    start(NULL);
    fd = cli();
    off = (size_t)snprintf(req, sizeof(req), "*1024\r\n$4\r\nargs\r\n");
    for (i = 1; i < 1024; i++) {
        memcpy(req + off, "$1\r\na\r\n", 7);
        off += 7;
    }
    ck_assert_int_eq(cliSend(fd, req, off), 0);
    EXPECT(fd, ":1024\r\n");
    close(fd);
}
END_TEST

/* One byte per write: every state of the scanner resumes. */
START_TEST(test_split_request) {
    static const char req[] = "*2\r\n$4\r\necho\r\n$5\r\nhello\r\n"
                              "*3\r\n$4\r\nargs\r\n$0\r\n\r\n$2\r\nab\r\n";
    size_t first = 25, i;     /* bytes of the ECHO */
    int fd;

    start(NULL);
    fd = cli();
    for (i = 0; i < sizeof(req) - 1; i++) {
        ck_assert_int_eq(cliSend(fd, req + i, 1), 0);
        pump(1);
        if (i == first - 2) expectNothing(fd, 5);
        if (i == first - 1) EXPECT(fd, "$5\r\nhello\r\n");
    }
    EXPECT(fd, ":3\r\n");
    close(fd);
}
END_TEST

/* A pipeline is answered in order, one request at a time: ECHO c waits for
 * LATER's reply. */
START_TEST(test_pipeline) {
    int fd;

    start(NULL);
    fd = cli();
    SEND(fd, "*2\r\n$4\r\necho\r\n$1\r\na\r\n"
         "*3\r\n$5\r\nlater\r\n$3\r\n300\r\n$1\r\nb\r\n"
         "*2\r\n$4\r\necho\r\n$1\r\nc\r\n"
         "*1\r\n$5\r\ncount\r\n");
    EXPECT(fd, "$1\r\na\r\n");
    expectNothing(fd, 50);
    ck_assert_int_eq(timers, 1);
    EXPECT(fd, "$1\r\nb\r\n$1\r\nc\r\n:1\r\n");
    close(fd);
}
END_TEST

START_TEST(test_async_reply) {
    int fd, fd2;

    start(NULL);
    fd = cli();
    fd2 = cli();
    sendf(fd, "later 300 slow");
    expectNothing(fd, 50);
    /* Other clients are served meanwhile. */
    sendf(fd2, "echo fast");
    EXPECT(fd2, "$4\r\nfast\r\n");
    EXPECT(fd, "$4\r\nslow\r\n");
    ck_assert_int_eq(timers, 0);
    sendf(fd, "ping");
    EXPECT(fd, "+PONG\r\n");
    close(fd);
    close(fd2);
}
END_TEST

/* The peer leaves while its command runs: the late reply goes nowhere, the
 * client is freed (valgrind checks), the server goes on. */
START_TEST(test_disconnect_pending) {
    struct linger lg = {1, 0};
    int fd;

    start(NULL);
    fd = cli();
    sendf(fd, "later 50 x");
    waitInt(&timers, 1);
    close(fd);
    waitInt(&timers, 0);
    waitClients(0);

    /* The same with a reset. */
    fd = cli();
    sendf(fd, "later 50 x");
    waitInt(&timers, 1);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
                     0);
    close(fd);
    waitInt(&timers, 0);
    waitClients(0);

    /* Gone with more requests pipelined behind the pending one. */
    fd = cli();
    sendf(fd, "later 50 x");
    sendf(fd, "echo y");
    waitInt(&timers, 1);
    close(fd);
    waitInt(&timers, 0);
    waitClients(0);

    fd = cli();
    sendf(fd, "ping");
    EXPECT(fd, "+PONG\r\n");
    close(fd);
}
END_TEST

START_TEST(test_close_after_reply) {
    int fd;

    start(NULL);
    fd = cli();
    SEND(fd, "*1\r\n$3\r\nbye\r\n*1\r\n$4\r\nping\r\n");
    EXPECT(fd, "+BYE\r\n");
    expectClosed(fd);
    waitClients(0);
}
END_TEST

/* ------------------------------------------------------------- clients */

#define MANY 200

START_TEST(test_many_clients) {
    static int fds[MANY];
    char expected[64];
    int i;

    start(NULL);
    for (i = 0; i < MANY; i++) {
        fds[i] = cli();
        if (i % 50 == 0) pump(0);
    }
    for (i = 0; i < MANY; i++) sendf(fds[i], "echo %d", i);
    for (i = 0; i < MANY; i++) {
        snprintf(expected, sizeof(expected), "$%d\r\n%d\r\n",
                 i < 10 ? 1 : i < 100 ? 2 : 3, i);
        expectReply(fds[i], expected, strlen(expected));
    }
    waitClients(MANY);
    sendf(fds[0], "count");
    EXPECT(fds[0], ":200\r\n");
    for (i = 0; i < MANY; i++) close(fds[i]);
    waitClients(0);
}
END_TEST

START_TEST(test_max_clients) {
    static int fds[ADMIN_MAX_CLIENTS];
    int i, fd;

    start(NULL);
    for (i = 0; i < ADMIN_MAX_CLIENTS; i++) {
        fds[i] = cli();
        if (i % 50 == 0) pump(0);
    }
    waitClients(ADMIN_MAX_CLIENTS);
    fd = cli();
    EXPECT(fd, "-ERR max number of clients reached\r\n");
    expectClosed(fd);
    ck_assert_int_eq(adminClientCount(srv), ADMIN_MAX_CLIENTS);

    /* A free place is taken again. */
    close(fds[0]);
    waitClients(ADMIN_MAX_CLIENTS - 1);
    fds[0] = cli();
    sendf(fds[0], "ping");
    EXPECT(fds[0], "+PONG\r\n");
    for (i = 0; i < ADMIN_MAX_CLIENTS; i++) close(fds[i]);
    waitClients(0);
}
END_TEST

/* A large reply is written as the client reads it. */
START_TEST(test_large_reply) {
    size_t len = 3 * 1000 * 1000;
    char *buf = malloc(len + 32);
    size_t got, i;
    int fd, closed;

    ck_assert_ptr_nonnull(buf);
    start(NULL);
    fd = cli();
    sendf(fd, "big 3000000");
    sendf(fd, "ping");
    pump(50);                   /* the socket fills up, the rest waits */
    got = cliRead(fd, buf, 10 + len + 2 + 7, &closed);
    ck_assert_uint_eq(got, 10 + len + 2 + 7);
    ck_assert_int_eq(memcmp(buf, "$3000000\r\n", 10), 0);
    for (i = 10; i < 10 + len; i++)
        if (buf[i] != 'x') break;
    ck_assert_uint_eq(i, 10 + len);
    ck_assert_int_eq(memcmp(buf + 10 + len, "\r\n+PONG\r\n", 9), 0);
    free(buf);
    close(fd);
}
END_TEST

/* A reply larger than ADMIN_MAX_OUTPUT drops its client; the others go
 * on. */
START_TEST(test_output_limit) {
    int fd, fd2;

    start(NULL);
    fd = cli();
    fd2 = cli();
    SEND(fd, "*2\r\n$3\r\nbig\r\n$8\r\n17000000\r\n");
    waitClients(1);
    close(fd);
    sendf(fd2, "ping");
    EXPECT(fd2, "+PONG\r\n");
    close(fd2);
}
END_TEST

/* A client that pipelines and does not read holds ADMIN_MAX_BACKLOG of
 * replies (and one more reply), not more: its next requests wait, and are
 * served as it reads. Twelve 2 MB replies at once would pass
 * ADMIN_MAX_OUTPUT and drop it. */
START_TEST(test_backlog) {
    size_t len = 2 * 1000 * 1000, want = 12 * (10 + len + 2) + 7;
    char *buf = malloc(want + 32);
    size_t got;
    int fd, fd2, closed, i;

    ck_assert_ptr_nonnull(buf);
    start(NULL);
    fd = cli();
    fd2 = cli();
    for (i = 0; i < 12; i++) sendf(fd, "big 2000000");
    sendf(fd, "ping");
    pump(50);
    waitClients(2);
    sendf(fd2, "ping");
    EXPECT(fd2, "+PONG\r\n");
    got = cliRead(fd, buf, want, &closed);
    ck_assert_uint_eq(got, want);
    ck_assert_int_eq(memcmp(buf + want - 7, "+PONG\r\n", 7), 0);
    free(buf);
    close(fd);
    close(fd2);
}
END_TEST

/* ---------------------------------------------------------- adminClose */

START_TEST(test_close_with_clients) {
    int idle, busy, partial;

    start(NULL);
    idle = cli();
    busy = cli();
    partial = cli();
    sendf(busy, "later 50 lost");
    SEND(partial, "*2\r\n$4\r\necho\r\n$5\r\nhel");
    waitInt(&timers, 1);
    waitClients(3);
    adminClose(srv);
    srv = NULL;
    expectClosed(idle);
    expectClosed(busy);
    expectClosed(partial);
    /* LATER's reply goes nowhere and its client is freed then. */
    waitInt(&timers, 0);
}
END_TEST

/* SHUTDOWN's way: the reply, then adminClose() from inside the command. */
START_TEST(test_close_from_command) {
    int fd, other;

    start(NULL);
    fd = cli();
    other = cli();
    SEND(fd, "*1\r\n$4\r\nstop\r\n*1\r\n$4\r\nping\r\n");
    EXPECT(fd, "+OK\r\n");
    expectClosed(fd);
    expectClosed(other);
    ck_assert_ptr_null(srv);

    /* Closed before the reply: the reply is dropped. */
    start(NULL);
    fd = cli();
    sendf(fd, "halt");
    expectClosed(fd);
    ck_assert_ptr_null(srv);
}
END_TEST

/* ---------------------------------------------------------- listening */

START_TEST(test_listen_errors) {
    char err[256], expected[256];
    adminServer *s;

    start(NULL);
    s = adminListen(base, "127.0.0.1", adminPort(srv), NULL, table, NULL,
                    err, sizeof(err));
    ck_assert_ptr_null(s);
    snprintf(expected, sizeof(expected), "admin: cannot listen on "
             "127.0.0.1:%d: Address already in use", adminPort(srv));
    ck_assert_str_eq(err, expected);

    s = adminListen(base, "127.0.0.1", 65536, NULL, table, NULL, err,
                    sizeof(err));
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err, "admin: cannot listen on 127.0.0.1:65536: "
                     "invalid port");

    /* A password nobody could send: the table has no AUTH. */
    s = adminListen(base, "127.0.0.1", 0, "pw", table + 2, NULL, err,
                    sizeof(err));
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err, "admin: cannot listen on 127.0.0.1:0: a password "
                     "but no AUTH");

    /* An address this host does not have. */
    s = adminListen(base, "192.0.2.1", 0, NULL, table, NULL, err,
                    sizeof(err));
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err, "admin: cannot listen on 192.0.2.1:0: Cannot "
                     "assign requested address");
}
END_TEST

START_TEST(test_ipv6_and_localhost) {
    char err[256];
    adminServer *s;
    int fd;

    s = adminListen(base, "::1", 0, NULL, table, NULL, err, sizeof(err));
    if (s == NULL) {
        /* No IPv6 here: only the message can be checked. */
        ck_assert_str_eq(err, "admin: cannot listen on [::1]:0: Cannot "
                         "assign requested address");
    } else {
        srv = s;
        fd = connectTo(AF_INET6, "::1", adminPort(s));
        sendf(fd, "ping");
        EXPECT(fd, "+PONG\r\n");
        close(fd);
        adminClose(s);
        srv = NULL;
    }

    s = adminListen(base, "localhost", 0, NULL, table, NULL, err,
                    sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    srv = s;
    fd = cli();
    sendf(fd, "ping");
    EXPECT(fd, "+PONG\r\n");
    close(fd);
}
END_TEST

/* Protocol errors are logged with the peer's address. */
START_TEST(test_log) {
    char path[] = "/tmp/test_admin.XXXXXX", logerr[256], buf[4096];
    ssize_t n;
    int fd, lfd;

    lfd = mkstemp(path);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(logOpen(path, logerr, sizeof(logerr)), 0);
    start(NULL);
    fd = cli();
    SEND(fd, "PING\r\n");
    EXPECT(fd, "-ERR Protocol error: inline commands are not supported\r\n");
    expectClosed(fd);
    ck_assert_int_eq(logOpen("/dev/null", logerr, sizeof(logerr)), 0);
    n = read(lfd, buf, sizeof(buf) - 1);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_msg(strstr(buf, " level=warn msg=\"admin: protocol error from "
                         "127.0.0.1:") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, ": inline commands are not supported\"\n") !=
                  NULL, "%s", buf);
    close(lfd);
    unlink(path);
}
END_TEST

static Suite *adminSuite(void) {
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("commands");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ping);
    tcase_add_test(tc, test_binary_arguments);
    tcase_add_test(tc, test_reply_types);
    tcase_add_test(tc, test_reply_redis);
    tcase_add_test(tc, test_unknown_command);
    tcase_add_test(tc, test_wrong_arity);
    tcase_add_test(tc, test_help);
    tcase_add_test(tc, test_auth);
    tcase_add_test(tc, test_auth_without_password);
    suite_add_tcase(s, tc);

    tc = tcase_create("protocol");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_malformed, 0,
                        sizeof(malformed) / sizeof(malformed[0]));
    tcase_add_test(tc, test_error_after_pipeline);
    tcase_add_test(tc, test_request_size);
    tcase_add_test(tc, test_max_arguments);
    tcase_add_test(tc, test_split_request);
    tcase_add_test(tc, test_pipeline);
    tcase_add_test(tc, test_async_reply);
    tcase_add_test(tc, test_disconnect_pending);
    tcase_add_test(tc, test_close_after_reply);
    suite_add_tcase(s, tc);

    tc = tcase_create("server");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_many_clients);
    tcase_add_test(tc, test_max_clients);
    tcase_add_test(tc, test_large_reply);
    tcase_add_test(tc, test_output_limit);
    tcase_add_test(tc, test_backlog);
    tcase_add_test(tc, test_close_with_clients);
    tcase_add_test(tc, test_close_from_command);
    tcase_add_test(tc, test_listen_errors);
    tcase_add_test(tc, test_ipv6_and_localhost);
    tcase_add_test(tc, test_log);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(adminSuite());
    char err[256];
    int failed;

    /* The warnings the tests provoke would bury Check's report. */
    if (logOpen("/dev/null", err, sizeof(err)) != 0) {
        fprintf(stderr, "test_admin: %s\n", err);
        return 1;
    }
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    logClose();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
