
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include "ngx_http_checkout_module.h"
#include "ngx_http_checkout_gate_lua.h"


#define NGX_HTTP_CHECKOUT_KEY_MAX_LEN  255
#define NGX_HTTP_CHECKOUT_SHA1_LEN     20

/* how long a running checkout holds its key beyond its own budget */
#define NGX_HTTP_CHECKOUT_KEY_HOLD     30000


static ngx_int_t ngx_http_checkout_idempotency_parse(ngx_str_t *value,
    ngx_str_t *key);
static void ngx_http_checkout_idempotency_fingerprint(ngx_chain_t *in,
    u_char *hex);
static void ngx_http_checkout_idempotency_done(void *data,
    redisReply *reply);
static ngx_int_t ngx_http_checkout_idempotency_copy(ngx_http_request_t *r,
    redisReply *reply, ngx_str_t *dst);


/* the gate, atomic in Redis: lua/gate.lua */
static ngx_str_t  ngx_http_checkout_gate_script =
    ngx_string(NGX_HTTP_CHECKOUT_GATE_LUA);


/*
 * Idempotency-Key as the IETF httpapi draft has it, an sf-string
 * ("8e03..."), or Stripe's bare form.  One header at most, 1-255 bytes,
 * printable ASCII.  NGX_DECLINED: the request is bad input.
 */

ngx_int_t
ngx_http_checkout_idempotency_key(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    ngx_str_t         value;
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Idempotency-Key") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Idempotency-Key",
                               h[i].key.len)
               == 0)
        {
            value = h[i].value;
            n++;
        }
    }

    if (n == 0) {
        if (ctx->conf->idempotency == NGX_HTTP_CHECKOUT_IDEMPOTENCY_REQUIRED) {
            return ngx_http_checkout_invalid(ctx, NGX_HTTP_BAD_REQUEST,
                                             "idempotency_key_required",
                                             "this checkout needs an "
                                             "Idempotency-Key header");
        }

        return NGX_OK;
    }

    if (n > 1
        || ngx_http_checkout_idempotency_parse(&value, &ctx->idempotency_key)
           != NGX_OK)
    {
        /* where keys are not honoured, a bad one is not an error either */

        if (ctx->conf->idempotency == NGX_HTTP_CHECKOUT_IDEMPOTENCY_OFF) {
            ngx_str_null(&ctx->idempotency_key);
            return NGX_OK;
        }

        return ngx_http_checkout_invalid(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_idempotency_key",
                                         "the Idempotency-Key must be one "
                                         "header of 1 to 255 printable "
                                         "characters");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_checkout_idempotency_parse(ngx_str_t *value, ngx_str_t *key)
{
    u_char  *p, *last, *dst, c;

    p = value->data;
    last = p + value->len;

    if (p < last && *p == '"') {

        /* an sf-string: quotes around, "\\" and "\"" escaped inside */

        if (last - p < 2 || last[-1] != '"') {
            return NGX_ERROR;
        }

        p++;
        last--;
        dst = p;
        key->data = p;

        while (p < last) {
            c = *p++;

            if (c == '\\') {
                if (p == last || (*p != '"' && *p != '\\')) {
                    return NGX_ERROR;
                }

                c = *p++;

            } else if (c == '"') {
                return NGX_ERROR;
            }

            *dst++ = c;
        }

        key->len = dst - key->data;

    } else {
        *key = *value;
    }

    if (key->len == 0 || key->len > NGX_HTTP_CHECKOUT_KEY_MAX_LEN) {
        return NGX_ERROR;
    }

    /* printable ASCII, as an sf-string has it */

    for (p = key->data; p < key->data + key->len; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Asks Redis what became of the key.  NGX_DECLINED: no key, the checkout
 * runs as it is; NGX_AGAIN: the request is posted once Redis answered.
 */

ngx_int_t
ngx_http_checkout_idempotency_gate(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    u_char                    *p;
    size_t                     argvlen[NGX_HTTP_CHECKOUT_GATE_ARGC];
    ngx_str_t                  hold, late, a[NGX_HTTP_CHECKOUT_GATE_ARGC];
    ngx_uint_t                 i;
    ngx_time_t                *tp;
    const char                *argv[NGX_HTTP_CHECKOUT_GATE_ARGC];
    ngx_http_core_loc_conf_t  *clcf;

    if (ctx->idempotency_key.len == 0
        || ctx->conf->idempotency == NGX_HTTP_CHECKOUT_IDEMPOTENCY_OFF)
    {
        return NGX_DECLINED;
    }

    if (ctx->conf->redis == NULL) {
        return NGX_DECLINED;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    /* the key is scoped by location: one endpoint cannot replay another */

    ctx->idempotency_redis_key.len =
                                sizeof(CHECKOUT_IDEMPOTENCY_KEY_PREFIX ":") - 1
                                + clcf->name.len
                                + ctx->idempotency_key.len;
    ctx->idempotency_redis_key.data =
                        ngx_pnalloc(r->pool, ctx->idempotency_redis_key.len);
    if (ctx->idempotency_redis_key.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->idempotency_redis_key.data,
                CHECKOUT_IDEMPOTENCY_KEY_PREFIX "%V:%V",
                &clcf->name, &ctx->idempotency_key);

    p = ngx_pnalloc(r->pool, 2 * NGX_HTTP_CHECKOUT_SHA1_LEN
                             + 2 * NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_http_checkout_idempotency_fingerprint(r->request_body->bufs, p);
    ctx->fingerprint.data = p;
    ctx->fingerprint.len = 2 * NGX_HTTP_CHECKOUT_SHA1_LEN;

    hold.data = p + ctx->fingerprint.len;
    hold.len = ngx_sprintf(hold.data, "%M",
                           ctx->conf->timeout + NGX_HTTP_CHECKOUT_KEY_HOLD)
               - hold.data;

    /*
     * The give-up time and the command's timer count from the same fresh
     * time: the loop's cached time may lag (a stalled loop), and a timer
     * counted from it would answer 503 before Redis sees the gate as late.
     */

    ngx_time_update();
    tp = ngx_timeofday();

    late.data = hold.data + hold.len;
    late.len = ngx_sprintf(late.data, "%uL",
                           (uint64_t) tp->sec * 1000 + tp->msec
                           + ctx->conf->redis_timeout)
               - late.data;

    ngx_str_set(&a[0], "EVAL");
    a[1] = ngx_http_checkout_gate_script;
    ngx_str_set(&a[2], NGX_HTTP_CHECKOUT_GATE_NUMKEYS);
    a[NGX_HTTP_CHECKOUT_GATE_RECORD] = ctx->idempotency_redis_key;
    a[NGX_HTTP_CHECKOUT_GATE_FINGERPRINT] = ctx->fingerprint;
    a[NGX_HTTP_CHECKOUT_GATE_HOLD] = hold;
    a[NGX_HTTP_CHECKOUT_GATE_GIVE_UP] = late;
    a[NGX_HTTP_CHECKOUT_GATE_ID] = ctx->id;

    for (i = 0; i < NGX_HTTP_CHECKOUT_GATE_ARGC; i++) {
        argv[i] = (const char *) a[i].data;
        argvlen[i] = a[i].len;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout gate: \"%V\", give up at %V",
                   &ctx->idempotency_redis_key, &late);

    ctx->command = ngx_http_checkout_redis_command(ctx->conf->redis->redis,
                                       ctx->conf->redis_timeout, 0,
                                       ngx_http_checkout_idempotency_done,
                                       ctx, NGX_HTTP_CHECKOUT_GATE_ARGC,
                                       argv, argvlen);

    if (ctx->command == NULL) {
        ctx->gate = NGX_HTTP_CHECKOUT_GATE_UNAVAILABLE;
        return NGX_OK;
    }

    return NGX_AGAIN;
}


/* the fingerprint of a key's request: SHA-1 of its body, in hex */

static void
ngx_http_checkout_idempotency_fingerprint(ngx_chain_t *in, u_char *hex)
{
    u_char      digest[NGX_HTTP_CHECKOUT_SHA1_LEN];
    ngx_sha1_t  sha1;

    ngx_sha1_init(&sha1);

    for ( /* void */ ; in; in = in->next) {
        ngx_sha1_update(&sha1, in->buf->pos, in->buf->last - in->buf->pos);
    }

    ngx_sha1_final(digest, &sha1);
    ngx_hex_dump(hex, digest, NGX_HTTP_CHECKOUT_SHA1_LEN);
}


static void
ngx_http_checkout_idempotency_done(void *data, redisReply *reply)
{
    ngx_http_checkout_ctx_t *ctx = data;

    ngx_connection_t    *c;
    redisReply          *state;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ctx->command = NULL;
    ctx->gate = NGX_HTTP_CHECKOUT_GATE_UNAVAILABLE;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "checkout gate done: %s",
                   (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements
                    && reply->element[0]->type == REDIS_REPLY_STRING)
                   ? reply->element[0]->str : "no answer");

    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements) {
        state = reply->element[0];

        if (ngx_http_checkout_redis_is(state, CHECKOUT_GATE_NEW)) {
            ctx->gate = NGX_HTTP_CHECKOUT_GATE_NEW;

        } else if (ngx_http_checkout_redis_is(state, CHECKOUT_GATE_REUSED)) {
            ctx->gate = NGX_HTTP_CHECKOUT_GATE_REUSED;

        } else if (ngx_http_checkout_redis_is(state,
                                              CHECKOUT_IDEMPOTENCY_RUNNING))
        {
            ctx->gate = NGX_HTTP_CHECKOUT_GATE_RUNNING;

        } else if (ngx_http_checkout_redis_is(state, CHECKOUT_GATE_LATE)) {
            /* in time for nginx, late for Redis: the clocks disagree */

            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "checkout idempotency: redis %V's clock is ahead "
                          "of this host's by more than "
                          "checkout_redis_timeout", &ctx->conf->redis->name);

        } else if (reply->elements == 5
                   && ngx_http_checkout_redis_is(state,
                                                CHECKOUT_IDEMPOTENCY_DONE)
                   && ngx_http_checkout_idempotency_copy(r, reply->element[1],
                                                  &ctx->stored.status) == NGX_OK
                   && ngx_http_checkout_idempotency_copy(r, reply->element[2],
                                                  &ctx->stored.body) == NGX_OK
                   && ngx_http_checkout_idempotency_copy(r, reply->element[3],
                                              &ctx->stored.location) == NGX_OK
                   && ngx_http_checkout_idempotency_copy(r, reply->element[4],
                                          &ctx->stored.retry_after) == NGX_OK)
        {
            ctx->gate = NGX_HTTP_CHECKOUT_GATE_DONE;
        }

    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "checkout idempotency: redis %V: %*s",
                      &ctx->conf->redis->name, (size_t) reply->len,
                      reply->str);
    }

    ngx_http_checkout_wake(r);

    ngx_http_run_posted_requests(c);
}


/* hiredis frees the reply after the callback: what is kept is copied */

static ngx_int_t
ngx_http_checkout_idempotency_copy(ngx_http_request_t *r, redisReply *reply,
    ngx_str_t *dst)
{
    if (reply->type != REDIS_REPLY_STRING) {
        return NGX_ERROR;
    }

    dst->len = reply->len;
    dst->data = ngx_pnalloc(r->pool, reply->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, reply->str, reply->len);

    return NGX_OK;
}
