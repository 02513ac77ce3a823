
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"
#include "ngx_http_checkout_publish_lua.h"


/* an entry's fields are the open-ended rest of the script's arguments */
#define ngx_http_checkout_event_field(args, name, value)                      \
    ngx_str_set(&(args)->argv[(args)->argc], name);                           \
    (args)->argv[(args)->argc + 1] = value;                                   \
    (args)->argc += 2


static ngx_int_t ngx_http_checkout_event_args(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_http_checkout_event_args_t *args);
static ngx_str_t *ngx_http_checkout_event_type(ngx_http_checkout_ctx_t *ctx);
static ngx_int_t ngx_http_checkout_event_data(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_str_t *data);
static void ngx_http_checkout_event_done(void *data, redisReply *reply);


static ngx_str_t  ngx_http_checkout_publish_script =
    ngx_string(NGX_HTTP_CHECKOUT_PUBLISH_LUA);


/*
 * After the decision and before the reply: the event the outcome owes
 * and the checkout's state, in one script (lua/publish.lua).  NGX_AGAIN:
 * the request is posted once Redis has answered; NGX_DECLINED: nothing to
 * wait for (no Redis configured, or Redis unreachable and the event
 * spooled).
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

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout publish: %V, %ui arguments",
                   &args->argv[NGX_HTTP_CHECKOUT_PUBLISH_STATUS], args->argc);

    if (ngx_http_checkout_event_send(ctx->conf->redis,
                                     ctx->conf->redis_timeout, 0, args,
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
    ngx_str_t                 *a, *type, source;
    ngx_tm_t                   tm;
    ngx_time_t                *tp;
    ngx_http_checkout_json_t  *order;

    a = args->argv;

    p = ngx_pnalloc(r->pool, sizeof(CHECKOUT_STATE_KEY_PREFIX) - 1
                             + ctx->id.len + 4 * NGX_INT64_LEN
                             + sizeof("1970-01-01T00:00:00.000Z") - 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&a[0], "EVAL");
    a[1] = ngx_http_checkout_publish_script;
    ngx_str_set(&a[2], NGX_HTTP_CHECKOUT_PUBLISH_NUMKEYS);

    a[NGX_HTTP_CHECKOUT_PUBLISH_STREAM] = ctx->conf->stream;

    a[NGX_HTTP_CHECKOUT_PUBLISH_STATE].data = p;
    a[NGX_HTTP_CHECKOUT_PUBLISH_STATE].len =
        ngx_sprintf(p, CHECKOUT_STATE_KEY_PREFIX "%V", &ctx->id) - p;
    p += a[NGX_HTTP_CHECKOUT_PUBLISH_STATE].len;

    if (ctx->gate == NGX_HTTP_CHECKOUT_GATE_NEW) {
        a[NGX_HTTP_CHECKOUT_PUBLISH_IDEMPOTENCY] = ctx->idempotency_redis_key;

    } else {
        ngx_str_null(&a[NGX_HTTP_CHECKOUT_PUBLISH_IDEMPOTENCY]);
    }

    /* the checkout's id is its event's id: stable across any replay */

    a[NGX_HTTP_CHECKOUT_PUBLISH_ID] = ctx->id;

    a[NGX_HTTP_CHECKOUT_PUBLISH_STATE_TTL].data = p;
    a[NGX_HTTP_CHECKOUT_PUBLISH_STATE_TTL].len =
        ngx_sprintf(p, "%T", ctx->conf->state_ttl) - p;
    p += a[NGX_HTTP_CHECKOUT_PUBLISH_STATE_TTL].len;

    a[NGX_HTTP_CHECKOUT_PUBLISH_STATUS] =
        *ngx_http_checkout_outcome_name(ctx->outcome);

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    a[NGX_HTTP_CHECKOUT_PUBLISH_TIME].data = p;
    a[NGX_HTTP_CHECKOUT_PUBLISH_TIME].len =
        ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec, tp->msec)
        - p;
    p += a[NGX_HTTP_CHECKOUT_PUBLISH_TIME].len;

    order = NULL;

    if (ctx->outcome == NGX_HTTP_CHECKOUT_CONFIRMED) {
        order = ngx_http_checkout_json_get(ctx->decisive->reply,
                                           CHECKOUT_REPLY_ORDER_ID);
    }

    if (order && order->type == NGX_HTTP_CHECKOUT_JSON_STRING) {
        a[NGX_HTTP_CHECKOUT_PUBLISH_ORDER_ID] = order->value;

    } else {
        ngx_str_null(&a[NGX_HTTP_CHECKOUT_PUBLISH_ORDER_ID]);
    }

    if (ctx->outcome != NGX_HTTP_CHECKOUT_CONFIRMED) {
        a[NGX_HTTP_CHECKOUT_PUBLISH_STEP] = ctx->decisive->conf->name;

    } else {
        ngx_str_null(&a[NGX_HTTP_CHECKOUT_PUBLISH_STEP]);
    }

    a[NGX_HTTP_CHECKOUT_PUBLISH_MAXLEN].data = p;
    a[NGX_HTTP_CHECKOUT_PUBLISH_MAXLEN].len =
        ngx_sprintf(p, "%ui", ctx->conf->maxlen) - p;
    p += a[NGX_HTTP_CHECKOUT_PUBLISH_MAXLEN].len;

    /* a failed checkout releases its key: a retry with it runs again */

    if (ctx->outcome == NGX_HTTP_CHECKOUT_FAILED) {
        ngx_str_null(&a[NGX_HTTP_CHECKOUT_PUBLISH_REPLY_STATUS]);

    } else {
        a[NGX_HTTP_CHECKOUT_PUBLISH_REPLY_STATUS].data = p;
        a[NGX_HTTP_CHECKOUT_PUBLISH_REPLY_STATUS].len =
            ngx_sprintf(p, "%ui", ctx->status) - p;
        p += a[NGX_HTTP_CHECKOUT_PUBLISH_REPLY_STATUS].len;
    }

    a[NGX_HTTP_CHECKOUT_PUBLISH_REPLY_BODY] = ctx->reply.body;
    a[NGX_HTTP_CHECKOUT_PUBLISH_REPLY_LOCATION] = ctx->reply.location;
    a[NGX_HTTP_CHECKOUT_PUBLISH_REPLY_RETRY_AFTER] = ctx->reply.retry_after;

    a[NGX_HTTP_CHECKOUT_PUBLISH_IDEMPOTENCY_TTL].data = p;
    a[NGX_HTTP_CHECKOUT_PUBLISH_IDEMPOTENCY_TTL].len =
        ngx_sprintf(p, "%M", ctx->conf->idempotency_ttl) - p;

    a[NGX_HTTP_CHECKOUT_PUBLISH_FINGERPRINT] = ctx->fingerprint;

    args->argc = NGX_HTTP_CHECKOUT_PUBLISH_ARGC;

    type = ngx_http_checkout_event_type(ctx);

    if (type == NULL) {
        return NGX_OK;
    }

    /* CloudEvents 1.0, binary mode: attributes as fields, data as JSON */

    source = r->uri;

    ngx_http_checkout_event_field(args, CHECKOUT_CE_SPECVERSION,
                                  (ngx_str_t)
                                  ngx_string(CHECKOUT_CE_SPECVERSION_VALUE));
    ngx_http_checkout_event_field(args, CHECKOUT_CE_ID, ctx->id);
    ngx_http_checkout_event_field(args, CHECKOUT_CE_TYPE, *type);
    ngx_http_checkout_event_field(args, CHECKOUT_CE_SOURCE, source);
    ngx_http_checkout_event_field(args, CHECKOUT_CE_TIME,
                                  a[NGX_HTTP_CHECKOUT_PUBLISH_TIME]);
    ngx_http_checkout_event_field(args, CHECKOUT_CE_SUBJECT, ctx->id);
    ngx_http_checkout_event_field(args, CHECKOUT_CE_SCHEMAVERSION,
                                  (ngx_str_t)
                                  ngx_string(CHECKOUT_SCHEMA_VERSION));
    ngx_http_checkout_event_field(args, CHECKOUT_EVENT_CONTENT_TYPE,
                                  (ngx_str_t)
                                  ngx_string(CHECKOUT_EVENT_DATA_TYPE));
    ngx_http_checkout_event_field(args, CHECKOUT_EVENT_DATA,
                                  (ngx_str_t) ngx_null_string);

    return ngx_http_checkout_event_data(r, ctx, &a[args->argc - 1]);
}


/* the event's type, as configured: NULL for an outcome that owes none */

static ngx_str_t *
ngx_http_checkout_event_type(ngx_http_checkout_ctx_t *ctx)
{
    switch (ctx->outcome) {

    case NGX_HTTP_CHECKOUT_CONFIRMED:
        return &ctx->conf->event_types[NGX_HTTP_CHECKOUT_EVENT_CONFIRMED];

    case NGX_HTTP_CHECKOUT_PENDING_REVIEW:
        return &ctx->conf->event_types[NGX_HTTP_CHECKOUT_EVENT_PENDING_REVIEW];

    case NGX_HTTP_CHECKOUT_DECLINED:
        return &ctx->conf->event_types[NGX_HTTP_CHECKOUT_EVENT_DECLINED];

    default:
        return NULL;
    }
}


/* the cart, what every step that ran answered, and the outcome */

static ngx_int_t
ngx_http_checkout_event_data(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_str_t *data)
{
    ngx_http_checkout_json_writer_t  w;

    if (ngx_http_checkout_json_writer_init(&w, r->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    ngx_http_checkout_json_cstr(&w, CHECKOUT_DATA_CHECKOUT_ID);
    ngx_http_checkout_json_str(&w, &ctx->id);

    ngx_http_checkout_json_cstr(&w, CHECKOUT_DATA_STATUS);
    ngx_http_checkout_json_str(&w,
                               ngx_http_checkout_outcome_name(ctx->outcome));

    ngx_http_checkout_json_cstr(&w, CHECKOUT_DATA_STEP);
    ngx_http_checkout_json_str(&w, &ctx->decisive->conf->name);

    ngx_http_checkout_json_cstr(&w, CHECKOUT_DATA_CART);
    ngx_http_checkout_json_value(&w, ctx->cart);

    ngx_http_checkout_json_cstr(&w, CHECKOUT_DATA_RESULTS);
    ngx_http_checkout_step_results(&w, ctx, ctx->nsteps);

    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    return ngx_http_checkout_json_result(&w, data);
}


/* the publish script's command: for a checkout, or a line of the spool */

ngx_int_t
ngx_http_checkout_event_send(ngx_http_checkout_redis_conf_t *redis,
    ngx_msec_t timeout, ngx_uint_t cancelable,
    ngx_http_checkout_event_args_t *args,
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

    *cmd = ngx_http_checkout_redis_command(redis->redis, timeout, cancelable,
                                           handler, data, args->argc, argv,
                                           argvlen);

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

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "checkout publish done: %s, %i",
                   reply ? "reply" : "no reply",
                   reply ? (ngx_int_t) reply->type : 0);

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "checkout %V: redis %V: %*s", &ctx->id,
                          &ctx->conf->redis->name, (size_t) reply->len,
                          reply->str);
        }

        (void) ngx_http_checkout_spool_write(r, ctx->conf->redis, ctx->event);
    }

    ngx_http_checkout_wake(r);

    ngx_http_run_posted_requests(c);
}
