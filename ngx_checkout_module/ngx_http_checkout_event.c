
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"


#define NGX_HTTP_CHECKOUT_EVENT_ARGS      40
#define NGX_HTTP_CHECKOUT_SPOOL_INTERVAL  1000


/*
 * The event, the checkout's state and the idempotent reply in one script,
 * so that they are written together or not at all, and once: the state's
 * "eventId" field is the guard, so a replayed spool entry is not appended
 * again.
 *
 * KEYS: stream, state hash, idempotency key or "".
 * ARGV: 1 event id, 2 state TTL, 3 status, 4 time, 5 order id or "",
 * 6 step or "", 7 stream cap or "0", 8 reply status ("" releases the
 * idempotency key), 9 reply body, 10 Location, 11 Retry-After,
 * 12 idempotency TTL in ms, 13 the request's fingerprint (the record may
 * have to be made anew: Redis may have lost it), then the entry's fields
 * and values; no fields means no event, the state only.
 */
static ngx_str_t  ngx_http_checkout_event_script = ngx_string(
    "if redis.call('HSETNX', KEYS[2], 'eventId', ARGV[1]) == 0 then "
        "return 0 "
    "end "
    "redis.call('HSET', KEYS[2], 'status', ARGV[3], 'created', ARGV[4], "
               "'updated', ARGV[4]) "
    "if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'orderId', ARGV[5]) "
    "end "
    "if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'step', ARGV[6]) "
    "end "
    "redis.call('EXPIRE', KEYS[2], ARGV[2]) "
    "if KEYS[3] ~= '' then "
        "if ARGV[8] == '' then "
            "redis.call('DEL', KEYS[3]) "
        "else "
            "redis.call('HSET', KEYS[3], 'state', 'done', 'status', ARGV[8], "
                       "'body', ARGV[9], 'location', ARGV[10], "
                       "'retryAfter', ARGV[11], 'fingerprint', ARGV[13]) "
            "redis.call('PEXPIRE', KEYS[3], ARGV[12]) "
        "end "
    "end "
    "if #ARGV > 13 then "
        "if ARGV[7] ~= '0' then "
            "redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[7], '*', "
                       "unpack(ARGV, 14)) "
        "else "
            "redis.call('XADD', KEYS[1], '*', unpack(ARGV, 14)) "
        "end "
    "end "
    "return 1");


/* an event's command, as sent and as written to the spool */
struct ngx_http_checkout_event_args_s {
    ngx_uint_t                        argc;
    ngx_str_t                         argv[NGX_HTTP_CHECKOUT_EVENT_ARGS];
};


/* this worker's spool of one Redis server */
typedef struct {
    ngx_http_checkout_redis_conf_t   *redis;
    ngx_str_t                         prefix;
    ngx_fd_t                          fd;
    ngx_uint_t                        pending;
    ngx_uint_t                        sequence;

    /*
     * The file being replayed, its commands still without a reply, those
     * that Redis could not take now (the file is replayed again), and its
     * lines that no replay can take (the file is kept aside for a human).
     */
    u_char                           *replaying;
    ngx_uint_t                        outstanding;
    ngx_uint_t                        failed;
    ngx_uint_t                        rejected;
} ngx_http_checkout_spool_t;


typedef struct {
    ngx_str_t                         dir;
    ngx_array_t                       spools;
    ngx_event_t                       timer;
    ngx_log_t                        *log;
} ngx_http_checkout_spools_t;


static ngx_int_t ngx_http_checkout_event_args(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_http_checkout_event_args_t *args);
static ngx_int_t ngx_http_checkout_event_data(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_str_t *data);
static ngx_int_t ngx_http_checkout_event_send(
    ngx_http_checkout_redis_conf_t *redis, ngx_msec_t timeout,
    ngx_http_checkout_event_args_t *args,
    ngx_http_checkout_redis_handler_pt handler, void *data,
    ngx_http_checkout_redis_cmd_t **cmd);
static void ngx_http_checkout_event_done(void *data, redisReply *reply);
static ngx_http_checkout_spool_t *ngx_http_checkout_spool_find(
    ngx_http_checkout_redis_conf_t *redis);
static ngx_int_t ngx_http_checkout_spool_write(ngx_http_request_t *r,
    ngx_http_checkout_redis_conf_t *redis,
    ngx_http_checkout_event_args_t *args);
static void ngx_http_checkout_spool_timer(ngx_event_t *ev);
static void ngx_http_checkout_spool_replay(ngx_http_checkout_spool_t *spool);
static ngx_int_t ngx_http_checkout_spool_take(
    ngx_http_checkout_spool_t *spool);
static ngx_int_t ngx_http_checkout_spool_claim_file(
    ngx_http_checkout_spool_t *spool, u_char *from);
static void ngx_http_checkout_spool_send(ngx_http_checkout_spool_t *spool,
    ngx_pool_t *pool, u_char *start, u_char *end);
static void ngx_http_checkout_spool_replayed(void *data, redisReply *reply);
static void ngx_http_checkout_spool_finish(ngx_http_checkout_spool_t *spool);


static ngx_http_checkout_spools_t  *ngx_http_checkout_spools;


/*
 * After the decision and before the reply: the event the outcome owes
 * and the checkout's state.  NGX_AGAIN: the request is posted once Redis
 * has answered; NGX_DECLINED: nothing to wait for (no Redis configured,
 * or Redis unreachable and the event spooled).
 */

ngx_int_t
ngx_http_checkout_event_publish(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    ngx_http_checkout_event_args_t  *args;

    if (ctx->conf->redis == NULL) {
        return NGX_DECLINED;
    }

    args = ngx_palloc(r->pool, sizeof(ngx_http_checkout_event_args_t));
    if (args == NULL
        || ngx_http_checkout_event_args(r, ctx, args) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_checkout_event_send(ctx->conf->redis,
                                     ctx->conf->redis_timeout, args,
                                     ngx_http_checkout_event_done, ctx,
                                     &ctx->command)
        != NGX_OK)
    {
        return ngx_http_checkout_spool_write(r, ctx->conf->redis, args);
    }

    ctx->event = args;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_checkout_event_args(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_http_checkout_event_args_t *args)
{
    u_char                    *p;
    ngx_str_t                 *a, *type;
    ngx_tm_t                   tm;
    ngx_time_t                *tp;
    ngx_http_checkout_json_t  *order;

    a = args->argv;

    p = ngx_pnalloc(r->pool, sizeof("checkout:") - 1 + ctx->id.len
                             + 4 * NGX_INT64_LEN
                             + sizeof("1970-01-01T00:00:00.000Z") - 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&a[0], "EVAL");
    a[1] = ngx_http_checkout_event_script;
    ngx_str_set(&a[2], "3");
    a[3] = ctx->conf->stream;

    a[4].data = p;
    a[4].len = ngx_sprintf(p, "checkout:%V", &ctx->id) - p;
    p += a[4].len;

    if (ctx->gate == NGX_HTTP_CHECKOUT_GATE_NEW) {
        a[5] = ctx->idempotency_redis_key;

    } else {
        ngx_str_null(&a[5]);
    }

    /* the checkout's id is its event's id: stable across any replay */

    a[6] = ctx->id;

    a[7].data = p;
    a[7].len = ngx_sprintf(p, "%T", ctx->conf->state_ttl) - p;
    p += a[7].len;

    a[8] = *ngx_http_checkout_outcome_name(ctx->outcome);

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    a[9].data = p;
    a[9].len = ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                           tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                           tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                           tp->msec)
               - p;
    p += a[9].len;

    order = NULL;

    if (ctx->outcome == NGX_HTTP_CHECKOUT_CONFIRMED) {
        order = ngx_http_checkout_json_get(ctx->decisive->reply, "orderId");
    }

    if (order && order->type == NGX_HTTP_CHECKOUT_JSON_STRING) {
        a[10] = order->value;

    } else {
        ngx_str_null(&a[10]);
    }

    if (ctx->outcome != NGX_HTTP_CHECKOUT_CONFIRMED) {
        a[11] = ctx->decisive->conf->name;

    } else {
        ngx_str_null(&a[11]);
    }

    a[12].data = p;
    a[12].len = ngx_sprintf(p, "%ui", ctx->conf->maxlen) - p;
    p += a[12].len;

    /* a failed checkout releases its key: a retry with it runs again */

    if (ctx->outcome == NGX_HTTP_CHECKOUT_FAILED) {
        ngx_str_null(&a[13]);

    } else {
        a[13].data = p;
        a[13].len = ngx_sprintf(p, "%ui", ctx->status) - p;
        p += a[13].len;
    }

    a[14] = ctx->reply.body;
    a[15] = ctx->reply.location;
    a[16] = ctx->reply.retry_after;

    a[17].data = p;
    a[17].len = ngx_sprintf(p, "%M", ctx->conf->idempotency_ttl) - p;

    a[18] = ctx->fingerprint;

    switch (ctx->outcome) {

    case NGX_HTTP_CHECKOUT_CONFIRMED:
        type = &ctx->conf->event_types[0];
        break;

    case NGX_HTTP_CHECKOUT_PENDING_REVIEW:
        type = &ctx->conf->event_types[1];
        break;

    case NGX_HTTP_CHECKOUT_DECLINED:
        type = &ctx->conf->event_types[2];
        break;

    default:
        args->argc = 19;
        return NGX_OK;
    }

    /* CloudEvents 1.0, binary mode: attributes as fields, data as JSON */

    ngx_str_set(&a[19], "ce_specversion");
    ngx_str_set(&a[20], "1.0");
    ngx_str_set(&a[21], "ce_id");
    a[22] = ctx->id;
    ngx_str_set(&a[23], "ce_type");
    a[24] = *type;
    ngx_str_set(&a[25], "ce_source");
    a[26] = r->uri;
    ngx_str_set(&a[27], "ce_time");
    a[28] = a[9];
    ngx_str_set(&a[29], "ce_subject");
    a[30] = ctx->id;
    ngx_str_set(&a[31], "ce_schemaversion");
    ngx_str_set(&a[32], "1");
    ngx_str_set(&a[33], "content-type");
    ngx_str_set(&a[34], "application/json");
    ngx_str_set(&a[35], "data");

    args->argc = 37;

    return ngx_http_checkout_event_data(r, ctx, &a[36]);
}


/* the cart, what every step that ran answered, and the outcome */

static ngx_int_t
ngx_http_checkout_event_data(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_str_t *data)
{
    ngx_uint_t                        i;
    ngx_http_checkout_step_t         *step;
    ngx_http_checkout_json_writer_t   w;

    if (ngx_http_checkout_json_writer_init(&w, r->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    ngx_http_checkout_json_cstr(&w, "checkoutId");
    ngx_http_checkout_json_str(&w, &ctx->id);

    ngx_http_checkout_json_cstr(&w, "status");
    ngx_http_checkout_json_str(&w,
                               ngx_http_checkout_outcome_name(ctx->outcome));

    ngx_http_checkout_json_cstr(&w, "step");
    ngx_http_checkout_json_str(&w, &ctx->decisive->conf->name);

    ngx_http_checkout_json_cstr(&w, "cart");
    ngx_http_checkout_json_value(&w, ctx->cart);

    ngx_http_checkout_json_cstr(&w, "results");
    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    for (i = 0; i < ctx->nsteps; i++) {
        step = &ctx->steps[i];

        if (!step->done || step->reply == NULL) {
            continue;
        }

        ngx_http_checkout_json_str(&w, &step->conf->name);
        ngx_http_checkout_json_value(&w, step->reply);
    }

    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);
    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    return ngx_http_checkout_json_result(&w, data);
}


static ngx_int_t
ngx_http_checkout_event_send(ngx_http_checkout_redis_conf_t *redis,
    ngx_msec_t timeout, ngx_http_checkout_event_args_t *args,
    ngx_http_checkout_redis_handler_pt handler, void *data,
    ngx_http_checkout_redis_cmd_t **cmd)
{
    ngx_uint_t   i;
    size_t       argvlen[NGX_HTTP_CHECKOUT_EVENT_ARGS];
    const char  *argv[NGX_HTTP_CHECKOUT_EVENT_ARGS];

    for (i = 0; i < args->argc; i++) {
        argv[i] = (const char *) args->argv[i].data;
        argvlen[i] = args->argv[i].len;
    }

    *cmd = ngx_http_checkout_redis_command(redis->redis, timeout, handler,
                                           data, args->argc, argv, argvlen);

    return *cmd ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_checkout_event_done(void *data, redisReply *reply)
{
    ngx_http_checkout_ctx_t *ctx = data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ctx->command = NULL;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "checkout %V: redis %V: %*s", &ctx->id,
                          &ctx->conf->redis->name, (size_t) reply->len,
                          reply->str);
        }

        (void) ngx_http_checkout_spool_write(r, ctx->conf->redis, ctx->event);
    }

    /* this runs in Redis's event: the request's own work is posted */

    if (ngx_http_post_request(r, NULL) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * The spool: when Redis cannot take an event, it is appended to this
 * worker's file and fsync'd before the client is answered, one JSON array
 * of the command's arguments a line.  A timer replays the files into Redis
 * once it answers; the script's guard makes a replay of an event that did
 * reach Redis a no-op.  Files of workers that are gone are taken over.
 */

ngx_int_t
ngx_http_checkout_spool_init(ngx_cycle_t *cycle,
    ngx_http_checkout_main_conf_t *cmcf)
{
    u_char                           *p;
    ngx_uint_t                        i;
    ngx_http_checkout_spool_t        *spool;
    ngx_http_checkout_spools_t       *spools;
    ngx_http_checkout_redis_conf_t  **server;

    if (cmcf->spool.len == 0 || cmcf->servers.nelts == 0) {
        return NGX_OK;
    }

    spools = ngx_pcalloc(cycle->pool, sizeof(ngx_http_checkout_spools_t));
    if (spools == NULL) {
        return NGX_ERROR;
    }

    spools->dir = cmcf->spool;
    spools->log = cycle->log;

    if (ngx_array_init(&spools->spools, cycle->pool, cmcf->servers.nelts,
                       sizeof(ngx_http_checkout_spool_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    server = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        spool = ngx_array_push(&spools->spools);
        if (spool == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(spool, sizeof(ngx_http_checkout_spool_t));

        spool->redis = server[i];
        spool->fd = NGX_INVALID_FILE;

        /* "redis-<n>-": one prefix per server, in the order configured */

        spool->prefix.data = ngx_pnalloc(cycle->pool, NGX_INT_T_LEN + 8);
        if (spool->prefix.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(spool->prefix.data, "redis-%ui-", i);
        spool->prefix.len = p - spool->prefix.data;

        spool->replaying = ngx_pnalloc(cycle->pool, NGX_MAX_PATH);
        if (spool->replaying == NULL) {
            return NGX_ERROR;
        }
    }

    spools->timer.handler = ngx_http_checkout_spool_timer;
    spools->timer.data = spools;
    spools->timer.log = cycle->log;
    spools->timer.cancelable = 1;

    ngx_http_checkout_spools = spools;

    ngx_add_timer(&spools->timer, NGX_HTTP_CHECKOUT_SPOOL_INTERVAL);

    return NGX_OK;
}


static ngx_http_checkout_spool_t *
ngx_http_checkout_spool_find(ngx_http_checkout_redis_conf_t *redis)
{
    ngx_uint_t                  i;
    ngx_http_checkout_spool_t  *spool;

    if (ngx_http_checkout_spools == NULL) {
        return NULL;
    }

    spool = ngx_http_checkout_spools->spools.elts;

    for (i = 0; i < ngx_http_checkout_spools->spools.nelts; i++) {
        if (spool[i].redis == redis) {
            return &spool[i];
        }
    }

    return NULL;
}


/*
 * The one blocking call in the request path, and only when Redis has
 * failed: the event must be on disk before the client is told anything.
 */

static ngx_int_t
ngx_http_checkout_spool_write(ngx_http_request_t *r,
    ngx_http_checkout_redis_conf_t *redis,
    ngx_http_checkout_event_args_t *args)
{
    u_char                           *p;
    ngx_str_t                         line, name;
    ngx_uint_t                        i;
    ngx_http_checkout_spool_t        *spool;
    ngx_http_checkout_json_writer_t   w;

    spool = ngx_http_checkout_spool_find(redis);

    if (spool == NULL
        || ngx_http_checkout_json_writer_init(&w, r->pool) != NGX_OK)
    {
        goto lost;
    }

    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_ARRAY);

    for (i = 0; i < args->argc; i++) {
        ngx_http_checkout_json_str(&w, &args->argv[i]);
    }

    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_ARRAY);

    if (ngx_http_checkout_json_result(&w, &line) != NGX_OK) {
        goto lost;
    }

    if (spool->fd == NGX_INVALID_FILE) {
        name.len = ngx_http_checkout_spools->dir.len + spool->prefix.len
                   + NGX_INT_T_LEN + sizeof("/.spool");
        name.data = ngx_pnalloc(r->pool, name.len);
        if (name.data == NULL) {
            goto lost;
        }

        p = ngx_sprintf(name.data, "%V/%V%P.spool%Z",
                        &ngx_http_checkout_spools->dir, &spool->prefix,
                        ngx_pid);

        spool->fd = ngx_open_file(name.data, NGX_FILE_APPEND,
                                  NGX_FILE_CREATE_OR_OPEN,
                                  NGX_FILE_DEFAULT_ACCESS);

        if (spool->fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                          ngx_open_file_n " \"%s\" failed", name.data);
            goto lost;
        }
    }

    p = ngx_pnalloc(r->pool, line.len + 1);
    if (p == NULL) {
        goto lost;
    }

    ngx_memcpy(p, line.data, line.len);
    p[line.len++] = '\n';
    line.data = p;

    if (ngx_write_fd(spool->fd, line.data, line.len) != (ssize_t) line.len
        || fsync(spool->fd) == -1)
    {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      "checkout spool write failed");
        goto lost;
    }

    spool->pending++;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "checkout %V: redis %V unavailable, event spooled",
                  &args->argv[6], &redis->name);

    return NGX_DECLINED;

lost:

    ngx_log_error(NGX_LOG_CRIT, r->connection->log, 0,
                  "checkout %V: redis %V unavailable and the spool failed: "
                  "event lost", &args->argv[6], &redis->name);

    return NGX_DECLINED;
}


static void
ngx_http_checkout_spool_timer(ngx_event_t *ev)
{
    ngx_http_checkout_spools_t *spools = ev->data;

    ngx_uint_t                  i;
    ngx_http_checkout_spool_t  *spool;

    spool = spools->spools.elts;

    for (i = 0; i < spools->spools.nelts; i++) {
        if (spool[i].outstanding == 0
            && ngx_http_checkout_redis_ready(spool[i].redis))
        {
            ngx_http_checkout_spool_replay(&spool[i]);
        }
    }

    if (!ngx_exiting && !ngx_terminate) {
        ngx_add_timer(ev, NGX_HTTP_CHECKOUT_SPOOL_INTERVAL);
    }
}


/* one file a tick: its lines are pipelined to Redis, in their order */

static void
ngx_http_checkout_spool_replay(ngx_http_checkout_spool_t *spool)
{
    u_char           *p, *last, *eol;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_pool_t       *pool;
    ngx_file_info_t   fi;

    if (ngx_http_checkout_spool_take(spool) != NGX_OK) {
        return;
    }

    fd = ngx_open_file(spool->replaying, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log,
                      ngx_errno, ngx_open_file_n " \"%s\" failed",
                      spool->replaying);
        return;
    }

    pool = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        goto done;
    }

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE,
                           ngx_http_checkout_spools->log);
    if (pool == NULL) {
        goto done;
    }

    p = ngx_pnalloc(pool, ngx_file_size(&fi));
    if (p == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, p, ngx_file_size(&fi));
    if (n != (ssize_t) ngx_file_size(&fi)) {
        ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log,
                      ngx_errno, "checkout spool \"%s\" read failed",
                      spool->replaying);
        goto done;
    }

    spool->failed = 0;
    spool->rejected = 0;

    for (last = p + n; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        if (eol > p) {
            ngx_http_checkout_spool_send(spool, pool, p, eol);
        }
    }

    if (spool->outstanding == 0) {
        ngx_http_checkout_spool_finish(spool);
    }

done:

    (void) ngx_close_file(fd);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


/*
 * Chooses the next file to replay, in spool->replaying: one left by an
 * earlier replay, one of a worker that is gone, or this worker's own
 * spool, closed and renamed so that new events start a new file.
 */

static ngx_int_t
ngx_http_checkout_spool_take(ngx_http_checkout_spool_t *spool)
{
    u_char      *name, *p, *end;
    size_t       len;
    ngx_int_t    pid, rc;
    ngx_dir_t    dir;
    ngx_str_t   *path;

    path = &ngx_http_checkout_spools->dir;
    rc = NGX_DECLINED;

    if (spool->pending) {
        (void) ngx_close_file(spool->fd);
        spool->fd = NGX_INVALID_FILE;
        spool->pending = 0;

        p = ngx_sprintf(spool->replaying, "%V/%V%P.spool%Z", path,
                        &spool->prefix, ngx_pid);

        return ngx_http_checkout_spool_claim_file(spool, spool->replaying);
    }

    if (ngx_open_dir(path, &dir) == NGX_ERROR) {
        return NGX_DECLINED;
    }

    while (rc == NGX_DECLINED && ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        /* files kept aside for a human are not replayed again */

        if (len <= spool->prefix.len
            || ngx_strncmp(name, spool->prefix.data, spool->prefix.len) != 0
            || (len > sizeof(".rejected") - 1
                && ngx_strncmp(name + len - (sizeof(".rejected") - 1),
                               ".rejected", sizeof(".rejected") - 1) == 0))
        {
            continue;
        }

        p = name + spool->prefix.len;
        end = name + len;

        for (pid = 0; p < end && *p >= '0' && *p <= '9'; p++) {
            pid = pid * 10 + (*p - '0');
        }

        /* a live worker's file is its own business */

        if (pid != ngx_pid && (kill(pid, 0) == 0 || ngx_errno == NGX_EPERM))
        {
            continue;
        }

        if (pid == ngx_pid && (size_t) (end - p) == sizeof(".spool") - 1) {
            continue;
        }

        ngx_sprintf(spool->replaying, "%V/%*s%Z", path, len, name);
        rc = ngx_http_checkout_spool_claim_file(spool, spool->replaying);
    }

    (void) ngx_close_dir(&dir);

    return rc;
}


/* renamed to this worker's next replay file, it is ours alone */

static ngx_int_t
ngx_http_checkout_spool_claim_file(ngx_http_checkout_spool_t *spool,
    u_char *from)
{
    u_char  to[NGX_MAX_PATH];

    if (ngx_http_checkout_spools->dir.len + spool->prefix.len
        + 2 * NGX_INT_T_LEN + sizeof("/-.replay") > NGX_MAX_PATH
        || ngx_strlen(from) >= NGX_MAX_PATH)
    {
        return NGX_ERROR;
    }

    ngx_sprintf(to, "%V/%V%P-%ui.replay%Z", &ngx_http_checkout_spools->dir,
                &spool->prefix, ngx_pid, spool->sequence++);

    if (ngx_rename_file(from, to) == NGX_FILE_ERROR) {

        /* another worker took it first */

        if (ngx_errno == NGX_ENOENT) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log,
                      ngx_errno, ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      from, to);
        return NGX_ERROR;
    }

    ngx_cpystrn(spool->replaying, to, NGX_MAX_PATH);

    return NGX_OK;
}


static void
ngx_http_checkout_spool_send(ngx_http_checkout_spool_t *spool,
    ngx_pool_t *pool, u_char *start, u_char *end)
{
    ngx_buf_t                        b;
    ngx_chain_t                      in;
    ngx_http_checkout_json_t        *root, *v;
    ngx_http_checkout_redis_cmd_t   *cmd;
    ngx_http_checkout_event_args_t   args;

    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.pos = start;
    b.last = end;
    in.buf = &b;
    in.next = NULL;

    if (ngx_http_checkout_json_parse(pool, &in, 2, &root)
        != NGX_HTTP_CHECKOUT_JSON_OK
        || root->type != NGX_HTTP_CHECKOUT_JSON_ARRAY)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log, 0,
                      "checkout spool \"%s\": a line is not an event: "
                      "\"%*s\"", spool->replaying,
                      (size_t) (end - start), start);
        spool->rejected++;
        return;
    }

    args.argc = 0;

    for (v = root->child;
         v && args.argc < NGX_HTTP_CHECKOUT_EVENT_ARGS;
         v = v->next)
    {
        args.argv[args.argc++] = v->value;
    }

    if (ngx_http_checkout_event_send(spool->redis, 1000, &args,
                                     ngx_http_checkout_spool_replayed, spool,
                                     &cmd)
        != NGX_OK)
    {
        spool->failed++;
        return;
    }

    spool->outstanding++;
}


static void
ngx_http_checkout_spool_replayed(void *data, redisReply *reply)
{
    ngx_http_checkout_spool_t *spool = data;

    spool->outstanding--;

    if (reply == NULL) {
        spool->failed++;

    } else if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log, 0,
                      "checkout spool \"%s\": redis refused an event: %*s",
                      spool->replaying, (size_t) reply->len, reply->str);
        spool->rejected++;
    }

    if (spool->outstanding == 0) {
        ngx_http_checkout_spool_finish(spool);
    }
}


/*
 * A file whose every line is in Redis goes; one that Redis could not
 * take now is replayed again; one with lines no replay can take is kept
 * aside, as NAME.rejected, with the events it holds.
 */

static void
ngx_http_checkout_spool_finish(ngx_http_checkout_spool_t *spool)
{
    u_char  *p, aside[NGX_MAX_PATH];

    if (spool->failed) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_checkout_spools->log, 0,
                      "checkout spool \"%s\": %ui events not replayed, "
                      "retrying", spool->replaying, spool->failed);
        return;
    }

    if (spool->rejected == 0) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_http_checkout_spools->log, 0,
                      "checkout spool \"%s\" replayed", spool->replaying);

        (void) ngx_delete_file(spool->replaying);
        return;
    }

    p = ngx_snprintf(aside, NGX_MAX_PATH - 1, "%s.rejected",
                     spool->replaying);
    *p = '\0';

    if (ngx_rename_file(spool->replaying, aside) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log,
                      ngx_errno, ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      spool->replaying, aside);
        return;
    }

    ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log, 0,
                  "checkout spool: %ui events cannot be replayed, kept in "
                  "\"%s\"", spool->rejected, aside);
}
