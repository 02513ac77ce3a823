
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/ioctl.h>

#include "ngx_http_checkout_module.h"


#define NGX_HTTP_CHECKOUT_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_CHECKOUT_REDIS_BACKOFF_MAX  5000

/* edge-triggered where the event method is (epoll), else level */
#define NGX_HTTP_CHECKOUT_REDIS_EVENT_FLAGS                                   \
    ((ngx_event_flags & NGX_USE_CLEAR_EVENT)                                  \
     ? NGX_CLEAR_EVENT : NGX_LEVEL_EVENT)

/* AUTH, SELECT and PING of a new connection: generous, it is not a request */
#define NGX_HTTP_CHECKOUT_REDIS_HELLO_TIMEOUT  1000


/*
 * One Redis server as this worker process sees it: a hiredis async
 * context driven by nginx's events, commands pipelined on it, each with
 * an nginx timer for its deadline (hiredis 0.14 has none).
 */
struct ngx_http_checkout_redis_s {
    ngx_http_checkout_redis_conf_t  *conf;
    redisAsyncContext               *ac;
    ngx_connection_t                *connection;
    ngx_event_t                      reconnect;
    ngx_msec_t                       backoff;
    ngx_log_t                       *log;
    unsigned                         ready:1;
    unsigned                         closing:1;
};


/*
 * A command in flight.  It belongs to the worker, not to a request: hiredis
 * holds it until a reply or its own teardown, which may come long after
 * the request that sent it is gone.
 */
struct ngx_http_checkout_redis_cmd_s {
    ngx_http_checkout_redis_t           *redis;
    ngx_http_checkout_redis_handler_pt   handler;
    void                                *data;
    ngx_event_t                          timer;
};


static void ngx_http_checkout_redis_connect(ngx_http_checkout_redis_t *redis);
static void ngx_http_checkout_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_checkout_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_checkout_redis_hello(void *data, redisReply *reply);
static void ngx_http_checkout_redis_drop(ngx_http_checkout_redis_t *redis,
    const char *why);
static void ngx_http_checkout_redis_retry(ngx_http_checkout_redis_t *redis);
static void ngx_http_checkout_redis_reconnect(ngx_event_t *ev);
static void ngx_http_checkout_redis_on_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_checkout_redis_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_checkout_redis_attach(
    ngx_http_checkout_redis_t *redis);
static void ngx_http_checkout_redis_add_read(void *privdata);
static void ngx_http_checkout_redis_del_read(void *privdata);
static void ngx_http_checkout_redis_add_write(void *privdata);
static void ngx_http_checkout_redis_del_write(void *privdata);
static void ngx_http_checkout_redis_cleanup(void *privdata);
static void ngx_http_checkout_redis_read_handler(ngx_event_t *ev);
static void ngx_http_checkout_redis_write_handler(ngx_event_t *ev);


ngx_int_t
ngx_http_checkout_redis_init(ngx_cycle_t *cycle,
    ngx_http_checkout_redis_conf_t *conf)
{
    ngx_http_checkout_redis_t  *redis;

    redis = ngx_pcalloc(cycle->pool, sizeof(ngx_http_checkout_redis_t));
    if (redis == NULL) {
        return NGX_ERROR;
    }

    redis->conf = conf;
    redis->log = cycle->log;
    redis->backoff = NGX_HTTP_CHECKOUT_REDIS_BACKOFF_MIN;

    redis->reconnect.handler = ngx_http_checkout_redis_reconnect;
    redis->reconnect.data = redis;
    redis->reconnect.log = cycle->log;
    redis->reconnect.cancelable = 1;

    conf->redis = redis;

    ngx_http_checkout_redis_connect(redis);

    return NGX_OK;
}


void
ngx_http_checkout_redis_done(ngx_http_checkout_redis_conf_t *conf)
{
    redisAsyncContext          *ac;
    ngx_http_checkout_redis_t  *redis;

    redis = conf->redis;

    if (redis == NULL) {
        return;
    }

    if (redis->reconnect.timer_set) {
        ngx_del_timer(&redis->reconnect);
    }

    /* the worker exits: no request is to be called back any more */

    redis->closing = 1;
    ac = redis->ac;

    if (ac) {
        redis->ac = NULL;
        redisAsyncFree(ac);
    }
}


/*
 * The address was resolved when the configuration was read: hiredis
 * resolves names synchronously, so it only ever gets an IP or a path.
 */

static void
ngx_http_checkout_redis_connect(ngx_http_checkout_redis_t *redis)
{
    int                              argc;
    size_t                           argvlen[2];
    const char                      *argv[2];
    redisAsyncContext               *ac;
    ngx_http_checkout_redis_conf_t  *conf;

    conf = redis->conf;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, redis->log, 0,
                   "checkout redis connect: %V", &conf->name);

    if (conf->unix_path.len) {
        ac = redisAsyncConnectUnix((char *) conf->unix_path.data);

    } else {
        ac = redisAsyncConnect((char *) conf->host.data, conf->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                      "checkout redis %V: cannot allocate a context",
                      &conf->name);
        ngx_http_checkout_redis_retry(redis);
        return;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                      "checkout redis %V: connect failed: %s",
                      &conf->name, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_checkout_redis_retry(redis);
        return;
    }

    ac->data = redis;
    redis->ac = ac;
    redis->ready = 0;

    /* the event hooks must be in place before hiredis asks to write */

    if (ngx_http_checkout_redis_attach(redis) != NGX_OK) {
        redis->ac = NULL;
        redisAsyncFree(ac);
        ngx_http_checkout_redis_retry(redis);
        return;
    }

    redisAsyncSetConnectCallback(ac, ngx_http_checkout_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_http_checkout_redis_on_disconnect);

    /* AUTH and SELECT go first in the pipeline; PING proves the link */

    argc = 0;

    if (conf->password.len) {
        argv[argc] = "AUTH";
        argvlen[argc++] = 4;
        argv[argc] = (char *) conf->password.data;
        argvlen[argc++] = conf->password.len;

        (void) ngx_http_checkout_redis_command(redis,
                                        NGX_HTTP_CHECKOUT_REDIS_HELLO_TIMEOUT,
                                        1, ngx_http_checkout_redis_hello, redis,
                                        argc, argv, argvlen);
        argc = 0;
    }

    if (conf->db) {
        argv[argc] = "SELECT";
        argvlen[argc++] = 6;
        argv[argc] = (char *) conf->db_text.data;
        argvlen[argc++] = conf->db_text.len;

        (void) ngx_http_checkout_redis_command(redis,
                                        NGX_HTTP_CHECKOUT_REDIS_HELLO_TIMEOUT,
                                        1, ngx_http_checkout_redis_hello, redis,
                                        argc, argv, argvlen);
        argc = 0;
    }

    argv[argc] = "PING";
    argvlen[argc++] = 4;

    (void) ngx_http_checkout_redis_command(redis,
                                        NGX_HTTP_CHECKOUT_REDIS_HELLO_TIMEOUT,
                                        1, ngx_http_checkout_redis_hello, redis,
                                        argc, argv, argvlen);
}


static void
ngx_http_checkout_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_checkout_redis_t  *redis = ac->data;

    if (status == REDIS_OK) {
        return;
    }

    /* hiredis frees the context right after this callback */

    ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                  "checkout redis %V: connect failed: %s",
                  &redis->conf->name, ac->errstr);

    if (redis->ac == ac) {
        redis->ac = NULL;
        ngx_http_checkout_redis_retry(redis);
    }
}


static void
ngx_http_checkout_redis_on_disconnect(const redisAsyncContext *ac,
    int status)
{
    ngx_http_checkout_redis_t  *redis = ac->data;

    if (redis->ac != ac) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                  "checkout redis %V: connection lost: %s",
                  &redis->conf->name,
                  ac->errstr[0] ? ac->errstr : "closed by the server");

    redis->ac = NULL;
    ngx_http_checkout_redis_retry(redis);
}


static void
ngx_http_checkout_redis_hello(void *data, redisReply *reply)
{
    ngx_http_checkout_redis_t *redis = data;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                      "checkout redis %V: %*s", &redis->conf->name,
                      (size_t) reply->len, reply->str);
        ngx_http_checkout_redis_drop(redis, NULL);
        return;
    }

    if (reply->type == REDIS_REPLY_STATUS
        && reply->len == 4 && ngx_strncmp(reply->str, "PONG", 4) == 0)
    {
        ngx_log_error(NGX_LOG_INFO, redis->log, 0,
                      "checkout redis %V: connected", &redis->conf->name);

        redis->ready = 1;
        redis->backoff = NGX_HTTP_CHECKOUT_REDIS_BACKOFF_MIN;
    }
}


/* a connection that failed a deadline is not trusted with the next one */

static void
ngx_http_checkout_redis_drop(ngx_http_checkout_redis_t *redis,
    const char *why)
{
    redisAsyncContext  *ac;

    ac = redis->ac;

    if (ac == NULL) {
        return;
    }

    if (why) {
        ngx_log_error(NGX_LOG_ERR, redis->log, 0,
                      "checkout redis %V: %s, reconnecting",
                      &redis->conf->name, why);
    }

    /* first, so that what the pending callbacks send fails at once */

    redis->ac = NULL;
    redisAsyncFree(ac);

    ngx_http_checkout_redis_retry(redis);
}


static void
ngx_http_checkout_redis_retry(ngx_http_checkout_redis_t *redis)
{
    redis->ready = 0;

    if (ngx_exiting || ngx_terminate || redis->reconnect.timer_set) {
        return;
    }

    ngx_add_timer(&redis->reconnect, redis->backoff);

    redis->backoff = ngx_min(redis->backoff * 2,
                             NGX_HTTP_CHECKOUT_REDIS_BACKOFF_MAX);
}


static void
ngx_http_checkout_redis_reconnect(ngx_event_t *ev)
{
    ngx_http_checkout_redis_t  *redis = ev->data;

    if (redis->ac == NULL && !ngx_exiting && !ngx_terminate) {
        ngx_http_checkout_redis_connect(redis);
    }
}


ngx_uint_t
ngx_http_checkout_redis_ready(ngx_http_checkout_redis_conf_t *conf)
{
    return conf->redis && conf->redis->ac && conf->redis->ready;
}


/*
 * Sends a command; "handler" is called exactly once with the reply, or
 * with NULL when the command fails, times out or the link is lost, unless
 * the command is cancelled first.  NULL is returned when the command
 * cannot be sent now (Redis is down): the handler is then never called.
 * A request's command is not "cancelable": a worker that stops gracefully
 * waits for its answer (at most its timeout), so the request ends whole.
 */

ngx_http_checkout_redis_cmd_t *
ngx_http_checkout_redis_command(ngx_http_checkout_redis_t *redis,
    ngx_msec_t timeout, ngx_uint_t cancelable,
    ngx_http_checkout_redis_handler_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_http_checkout_redis_cmd_t  *cmd;

    if (redis == NULL || redis->ac == NULL) {
        return NULL;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, redis->log, 0,
                   "checkout redis command: %*s, timeout %M",
                   argvlen[0], argv[0], timeout);

    cmd = ngx_calloc(sizeof(ngx_http_checkout_redis_cmd_t), redis->log);
    if (cmd == NULL) {
        return NULL;
    }

    cmd->redis = redis;
    cmd->handler = handler;
    cmd->data = data;

    if (redisAsyncCommandArgv(redis->ac, ngx_http_checkout_redis_on_reply,
                              cmd, argc, argv, argvlen)
        != REDIS_OK)
    {
        ngx_free(cmd);
        return NULL;
    }

    cmd->timer.handler = ngx_http_checkout_redis_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = redis->log;
    cmd->timer.cancelable = cancelable;

    ngx_add_timer(&cmd->timer, timeout);

    return cmd;
}


void
ngx_http_checkout_redis_cancel(ngx_http_checkout_redis_cmd_t *cmd)
{
    cmd->handler = NULL;

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }
}


static void
ngx_http_checkout_redis_on_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_checkout_redis_cmd_t  *cmd = privdata;

    void                                *data;
    ngx_http_checkout_redis_handler_pt   handler;

    handler = cmd->handler;
    data = cmd->data;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cmd->redis->log, 0,
                   "checkout redis reply: %s%s",
                   reply ? "received" : "none (link lost)",
                   handler ? "" : ", nobody waits for it");

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    if (cmd->redis->closing) {
        handler = NULL;
    }

    ngx_free(cmd);

    if (handler) {
        handler(data, reply);
    }
}


static void
ngx_http_checkout_redis_timeout(ngx_event_t *ev)
{
    ngx_http_checkout_redis_cmd_t  *cmd = ev->data;

    void                                *data;
    ngx_http_checkout_redis_handler_pt   handler;

    handler = cmd->handler;
    data = cmd->data;
    cmd->handler = NULL;

    /* frees cmd: hiredis calls back every pending command with NULL */

    ngx_http_checkout_redis_drop(cmd->redis, "a command timed out");

    if (handler) {
        handler(data, NULL);
    }
}


/* hiredis's event hooks, on an nginx connection for its socket */

static ngx_int_t
ngx_http_checkout_redis_attach(ngx_http_checkout_redis_t *redis)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(redis->ac->c.fd, redis->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = redis;
    c->read->handler = ngx_http_checkout_redis_read_handler;
    c->write->handler = ngx_http_checkout_redis_write_handler;
    c->read->log = redis->log;
    c->write->log = redis->log;

    redis->connection = c;

    redis->ac->ev.data = redis;
    redis->ac->ev.addRead = ngx_http_checkout_redis_add_read;
    redis->ac->ev.delRead = ngx_http_checkout_redis_del_read;
    redis->ac->ev.addWrite = ngx_http_checkout_redis_add_write;
    redis->ac->ev.delWrite = ngx_http_checkout_redis_del_write;
    redis->ac->ev.cleanup = ngx_http_checkout_redis_cleanup;

    return NGX_OK;
}


static void
ngx_http_checkout_redis_add_read(void *privdata)
{
    ngx_http_checkout_redis_t  *redis = privdata;

    ngx_event_t  *rev;

    rev = redis->connection->read;

    if (!rev->active) {
        (void) ngx_add_event(rev, NGX_READ_EVENT,
                             NGX_HTTP_CHECKOUT_REDIS_EVENT_FLAGS);
    }
}


static void
ngx_http_checkout_redis_del_read(void *privdata)
{
    ngx_http_checkout_redis_t  *redis = privdata;

    if (redis->connection->read->active) {
        (void) ngx_del_event(redis->connection->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_checkout_redis_add_write(void *privdata)
{
    ngx_http_checkout_redis_t  *redis = privdata;

    ngx_event_t  *wev;

    wev = redis->connection->write;

    if (!wev->active) {
        (void) ngx_add_event(wev, NGX_WRITE_EVENT,
                             NGX_HTTP_CHECKOUT_REDIS_EVENT_FLAGS);
    }
}


static void
ngx_http_checkout_redis_del_write(void *privdata)
{
    ngx_http_checkout_redis_t  *redis = privdata;

    if (redis->connection->write->active) {
        (void) ngx_del_event(redis->connection->write, NGX_WRITE_EVENT, 0);
    }
}


/* hiredis closes the socket itself right after this */

static void
ngx_http_checkout_redis_cleanup(void *privdata)
{
    ngx_http_checkout_redis_t  *redis = privdata;

    ngx_connection_t  *c;

    c = redis->connection;

    if (c == NULL) {
        return;
    }

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    redis->connection = NULL;
}


/*
 * hiredis reads at most 16k at a time; with edge-triggered events what is
 * left in the socket would never be signalled again, so read it all.
 */

static void
ngx_http_checkout_redis_read_handler(ngx_event_t *ev)
{
    int                         left;
    ngx_socket_t                fd;
    ngx_connection_t           *c;
    redisAsyncContext          *ac;
    ngx_http_checkout_redis_t  *redis;

    c = ev->data;
    redis = c->data;
    ac = redis->ac;
    fd = c->fd;

    if (ac == NULL) {
        return;
    }

    do {
        redisAsyncHandleRead(ac);

    } while (redis->ac == ac
             && ioctl(fd, FIONREAD, &left) == 0
             && left > 0);
}


static void
ngx_http_checkout_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_checkout_redis_t  *redis;

    c = ev->data;
    redis = c->data;

    if (redis->ac) {
        redisAsyncHandleWrite(redis->ac);
    }
}
