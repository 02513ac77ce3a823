/* checkout-worker admin port: a small RESP server on the worker's libevent
 * loop, so that operators use redis-cli against it (redis-cli -p 6381 info).
 *
 * A request is a RESP array of bulk strings, as redis-cli sends it. The
 * server reads it, finds the command in the caller's table, checks AUTH
 * and the arity and calls it; the command writes one reply and calls
 * adminCommandDone(), at once or later (after an asynchronous Redis call).
 * AUTH and HELP are the server's own (adminAuthCommand, adminHelpCommand):
 * a table lists them like any other command.
 * A client's requests are served one at a time, in order: the next one is
 * read only after the previous one is done. Anything else on the wire
 * (inline commands, malformed frames, requests over the limits below) gets
 * "-ERR Protocol error: ..." and the connection is closed. If the peer goes
 * away while a command runs, the reply functions do nothing and
 * adminCommandDone() frees the client.
 *
 * Ownership: adminListen() returns a server the caller releases with
 * adminClose(). The command table and the privdata are the caller's and must
 * outlive the server. An adminClient belongs to the server; a command may
 * keep it until its adminCommandDone(), even past adminClose(). */

#ifndef CHECKOUT_WORKER_ADMIN_H
#define CHECKOUT_WORKER_ADMIN_H

#include <stddef.h>

#define ADMIN_MAX_REQUEST (64 * 1024)   /* bytes of a request, framing
                                         * included */
#define ADMIN_MAX_ARGS 1024             /* elements of a request */
#define ADMIN_MAX_OUTPUT (16 * 1024 * 1024) /* unsent reply bytes before the
                                             * client is dropped */
#define ADMIN_MAX_CLIENTS 1000
#define ADMIN_MAX_ERROR 512             /* bytes of an error reply's text */

struct event_base;
struct redisReply;

typedef struct adminServer adminServer;
typedef struct adminClient adminClient;

/* A command: argv[0] is its name as the client sent it. argv[i] are
 * NUL-terminated copies (binary-safe lengths in argvlen) that stay valid
 * until adminCommandDone(). */
typedef void adminCommandProc(adminClient *c, int argc, char **argv,
                              size_t *argvlen, void *privdata);

typedef struct adminCommand {
    const char *name;   /* lower case; matched case-insensitively */
    int min_args;       /* arguments it takes, counting the name */
    int max_args;       /* -1: no limit */
    const char *help;   /* its line in HELP: "PAUSE group" */
    adminCommandProc *proc;
} adminCommand;

adminServer *adminListen(struct event_base *base, const char *host, int port,
                         const char *password, const adminCommand *table,
                         void *privdata, char *err, size_t errlen);
int adminPort(const adminServer *s);
int adminClientCount(const adminServer *s);
void adminClose(adminServer *s);

/* AUTH password (or AUTH default password): the one command served before
 * a client has authenticated. A server with a password needs it in its
 * table, as {"auth", 2, 3, "AUTH password", adminAuthCommand}. */
void adminAuthCommand(adminClient *c, int argc, char **argv,
                      size_t *argvlen, void *privdata);
/* HELP: the help line of every command in the table, in its order. */
void adminHelpCommand(adminClient *c, int argc, char **argv,
                      size_t *argvlen, void *privdata);

/* Replies: a command writes exactly one (an array header and then its
 * elements count as one). */
void adminReplyStatus(adminClient *c, const char *status);
#ifdef __GNUC__
void adminReplyError(adminClient *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#else
void adminReplyError(adminClient *c, const char *fmt, ...);
#endif
void adminReplyInteger(adminClient *c, long long v);
void adminReplyBulk(adminClient *c, const char *s, size_t len);
void adminReplyBulkCString(adminClient *c, const char *s);
void adminReplyNull(adminClient *c);
void adminReplyArray(adminClient *c, long long n);
void adminReplyRedis(adminClient *c, const struct redisReply *r);
void adminCommandDone(adminClient *c);
void adminCloseAfterReply(adminClient *c);

#endif
