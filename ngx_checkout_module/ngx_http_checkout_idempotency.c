
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include "ngx_http_checkout_module.h"


#define NGX_HTTP_CHECKOUT_KEY_MAX_LEN  255
#define NGX_HTTP_CHECKOUT_SHA1_LEN     20

/* how long a running checkout holds its key beyond its own budget */
#define NGX_HTTP_CHECKOUT_KEY_HOLD     30000


/*
 * The gate, atomic in Redis: a new key is taken for this request (with
 * the body's fingerprint); a known key answers what became of it.  A gate
 * that runs after its request gave up (Redis was paused) takes nothing:
 * the client was told that nothing was done.
 * KEYS: the key's hash.  ARGV: fingerprint, hold in ms, give-up time in
 * Unix ms, the checkout's id (whose record it is).
 */
static ngx_str_t  ngx_http_checkout_gate_script = ngx_string(
    "local t = redis.call('TIME') "
    "if t[1] * 1000 + math.floor(t[2] / 1000) > tonumber(ARGV[3]) then "
        "return {'late'} "
    "end "
    "local v = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', "
                         "'status', 'body', 'location', 'retryAfter') "
    "if not v[1] then "
        "redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], "
                   "'state', 'running', 'checkoutId', ARGV[4]) "
        "redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
        "return {'new'} "
    "end "
    "if v[1] ~= ARGV[1] then return {'reused'} end "
    "if v[2] ~= 'done' then return {'running'} end "
    "return {'done', v[3], v[4], v[5] or '', v[6] or ''}");


static ngx_int_t ngx_http_checkout_idempotency_parse(ngx_str_t *value,
    ngx_str_t *key);
static void ngx_http_checkout_idempotency_fingerprint(ngx_chain_t *in,
    u_char *hex);
static void ngx_http_checkout_idempotency_done(void *data,
    redisReply *reply);
static ngx_int_t ngx_http_checkout_idempotency_copy(ngx_http_request_t *r,
    redisReply *reply, ngx_str_t *dst);


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
            ctx->outcome = NGX_HTTP_CHECKOUT_INVALID_REQUEST;
            ctx->status = NGX_HTTP_BAD_REQUEST;
            ctx->error = "idempotency_key_required";
            ctx->message = "this checkout needs an Idempotency-Key header";
            return NGX_DECLINED;
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

        ctx->outcome = NGX_HTTP_CHECKOUT_INVALID_REQUEST;
        ctx->status = NGX_HTTP_BAD_REQUEST;
        ctx->error = "invalid_idempotency_key";
        ctx->message = "the Idempotency-Key must be one header of 1 to 255 "
                       "printable characters";
        return NGX_DECLINED;
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
    u_char                        *p;
    size_t                         argvlen[8];
    ngx_str_t                      hold, late;
    ngx_time_t                    *tp;
    const char                    *argv[8];
    ngx_http_core_loc_conf_t      *clcf;

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

    ctx->idempotency_redis_key.len = sizeof("checkout:idem::") - 1
                                     + clcf->name.len
                                     + ctx->idempotency_key.len;
    ctx->idempotency_redis_key.data =
                        ngx_pnalloc(r->pool, ctx->idempotency_redis_key.len);
    if (ctx->idempotency_redis_key.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->idempotency_redis_key.data, "checkout:idem:%V:%V",
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

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = (const char *) ngx_http_checkout_gate_script.data;
    argvlen[1] = ngx_http_checkout_gate_script.len;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (const char *) ctx->idempotency_redis_key.data;
    argvlen[3] = ctx->idempotency_redis_key.len;
    argv[4] = (const char *) ctx->fingerprint.data;
    argvlen[4] = ctx->fingerprint.len;
    argv[5] = (const char *) hold.data;
    argvlen[5] = hold.len;
    argv[6] = (const char *) late.data;
    argvlen[6] = late.len;
    argv[7] = (const char *) ctx->id.data;
    argvlen[7] = ctx->id.len;

    ctx->command = ngx_http_checkout_redis_command(ctx->conf->redis->redis,
                                       ctx->conf->redis_timeout, 0,
                                       ngx_http_checkout_idempotency_done,
                                       ctx, 8, argv, argvlen);

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

    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements) {
        state = reply->element[0];

        if (state->len == 3 && ngx_strncmp(state->str, "new", 3) == 0) {
            ctx->gate = NGX_HTTP_CHECKOUT_GATE_NEW;

        } else if (state->len == 6
                   && ngx_strncmp(state->str, "reused", 6) == 0)
        {
            ctx->gate = NGX_HTTP_CHECKOUT_GATE_REUSED;

        } else if (state->len == 7
                   && ngx_strncmp(state->str, "running", 7) == 0)
        {
            ctx->gate = NGX_HTTP_CHECKOUT_GATE_RUNNING;

        } else if (state->len == 4 && ngx_strncmp(state->str, "late", 4) == 0)
        {
            /* in time for nginx, late for Redis: the clocks disagree */

            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "checkout idempotency: redis %V's clock is ahead "
                          "of this host's by more than "
                          "checkout_redis_timeout", &ctx->conf->redis->name);

        } else if (reply->elements == 5
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
