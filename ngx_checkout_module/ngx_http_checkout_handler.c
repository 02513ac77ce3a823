
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/random.h>

#include "ngx_http_checkout_module.h"


static ngx_int_t ngx_http_checkout_content_type_valid(ngx_http_request_t *r);
static void ngx_http_checkout_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_checkout_begin(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
static ngx_int_t ngx_http_checkout_pass_gate(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
static void ngx_http_checkout_cleanup(void *data);
static ngx_int_t ngx_http_checkout_read_cart(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
static ngx_int_t ngx_http_checkout_create_id(ngx_http_request_t *r,
    ngx_str_t *id);
static void ngx_http_checkout_resume(ngx_http_request_t *r);
static ngx_int_t ngx_http_checkout_advance(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
static void ngx_http_checkout_decide(ngx_http_checkout_ctx_t *ctx,
    ngx_http_checkout_step_t *step);
static ngx_int_t ngx_http_checkout_conclude(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);


static u_char  ngx_http_checkout_id_alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


ngx_int_t
ngx_http_checkout_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_pool_cleanup_t            *cln;
    ngx_http_checkout_ctx_t       *ctx;
    ngx_http_checkout_loc_conf_t  *cklcf;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout handler");

    if (r != r->main) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "checkout cannot run in a subrequest");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cklcf = ngx_http_get_module_loc_conf(r, ngx_http_checkout_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_checkout_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_checkout_cleanup;
    cln->data = ctx;

    ctx->request = r;
    ctx->conf = cklcf;
    ctx->start = ngx_http_checkout_now();

    ngx_http_set_ctx(r, ctx, ngx_http_checkout_module);

    if (r->method != NGX_HTTP_POST) {
        ngx_http_checkout_invalid(ctx, NGX_HTTP_NOT_ALLOWED,
                                  "method_not_allowed",
                                  "a checkout is a POST request");

    } else if (ngx_http_checkout_content_type_valid(r) != NGX_OK) {
        ngx_http_checkout_invalid(ctx, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                  "unsupported_media_type",
                                  "the body must be application/json");

    } else if (r->headers_in.content_length_n > (off_t) cklcf->max_body_size)
    {
        ngx_http_checkout_invalid(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "body_too_large",
                                  "the body is larger than the checkout "
                                  "accepts");
    }

    if (ctx->outcome == NGX_HTTP_CHECKOUT_INVALID_REQUEST) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_checkout_send_invalid(r, ctx);
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_checkout_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* application/json, or a structured syntax suffix: application/x+json */

static ngx_int_t
ngx_http_checkout_content_type_valid(ngx_http_request_t *r)
{
    u_char  *p, *last, *semicolon;

    if (r->headers_in.content_type == NULL) {
        return NGX_ERROR;
    }

    p = r->headers_in.content_type->value.data;
    last = p + r->headers_in.content_type->value.len;

    semicolon = ngx_strlchr(p, last, ';');
    if (semicolon) {
        last = semicolon;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    if (last - p < 16 || ngx_strncasecmp(p, (u_char *) "application/", 12))
    {
        return NGX_ERROR;
    }

    if (last - p == 16 && ngx_strncasecmp(p + 12, (u_char *) "json", 4) == 0)
    {
        return NGX_OK;
    }

    if (last - p > 17 && ngx_strncasecmp(last - 5, (u_char *) "+json", 5) == 0)
    {
        return NGX_OK;
    }

    return NGX_ERROR;
}


static void
ngx_http_checkout_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_checkout_ctx_t  *ctx;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout body read");

    ctx = ngx_http_get_module_ctx(r, ngx_http_checkout_module);

    rc = ngx_http_checkout_begin(r, ctx);

    /* NGX_DONE: a step runs and holds the body's reference on r */

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_http_checkout_begin(ngx_http_request_t *r, ngx_http_checkout_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_checkout_read_cart(r, ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_checkout_idempotency_key(r, ctx);
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_checkout_send_invalid(r, ctx);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    /* the id is made first: the idempotency record names its checkout */

    if (ngx_http_checkout_create_id(r, &ctx->id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout begin: %V", &ctx->id);

    r->write_event_handler = ngx_http_checkout_resume;

    rc = ngx_http_checkout_idempotency_gate(r, ctx);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_checkout_pass_gate(r, ctx);
}


/* what the idempotency key allows: run, replay, or refuse */

static ngx_int_t
ngx_http_checkout_pass_gate(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    ngx_uint_t                      i;
    ngx_http_checkout_step_conf_t  *conf;

    if (ctx->gate != NGX_HTTP_CHECKOUT_GATE_NONE
        && ctx->gate != NGX_HTTP_CHECKOUT_GATE_NEW)
    {
        /* no checkout starts: $checkout_id is not this unused one */
        ngx_str_null(&ctx->id);
    }

    switch (ctx->gate) {

    case NGX_HTTP_CHECKOUT_GATE_REUSED:
        ngx_http_checkout_invalid(ctx, NGX_HTTP_CHECKOUT_UNPROCESSABLE,
                                  "idempotency_key_reused",
                                  "the Idempotency-Key was used with "
                                  "another body");
        return ngx_http_checkout_send_invalid(r, ctx);

    case NGX_HTTP_CHECKOUT_GATE_RUNNING:
        ngx_http_checkout_invalid(ctx, NGX_HTTP_CONFLICT,
                                  "idempotency_key_in_use",
                                  "a checkout with this Idempotency-Key "
                                  "is still running");
        return ngx_http_checkout_send_invalid(r, ctx);

    case NGX_HTTP_CHECKOUT_GATE_DONE:
        return ngx_http_checkout_send_stored(r, ctx);

    case NGX_HTTP_CHECKOUT_GATE_UNAVAILABLE:
        ngx_http_checkout_invalid(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "idempotency_unavailable",
                                  "the Idempotency-Key cannot be checked "
                                  "now; nothing was done");
        ctx->outcome = NGX_HTTP_CHECKOUT_FAILED;
        return ngx_http_checkout_send_invalid(r, ctx);

    default: /* NGX_HTTP_CHECKOUT_GATE_NONE, NGX_HTTP_CHECKOUT_GATE_NEW */
        break;
    }

    ctx->steps = ngx_pcalloc(r->pool, ctx->conf->steps->nelts
                                      * sizeof(ngx_http_checkout_step_t));
    if (ctx->steps == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_checkout_step_init(r, ctx);

    ctx->nsteps = ctx->conf->steps->nelts;
    conf = ctx->conf->steps->elts;

    for (i = 0; i < ctx->nsteps; i++) {
        ctx->steps[i].conf = &conf[i];
        ctx->steps[i].ctx = ctx;
    }

    ctx->deadline = ngx_http_checkout_now() + ctx->conf->timeout * 1000;
    ctx->phase = NGX_HTTP_CHECKOUT_PHASE_STEPS;

    return ngx_http_checkout_advance(r, ctx);
}


static ngx_int_t
ngx_http_checkout_read_cart(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    off_t                            size;
    ngx_chain_t                     *cl;
    ngx_http_checkout_json_error_e   err;

    size = 0;
    cl = r->request_body ? r->request_body->bufs : NULL;

    for ( /* void */ ; cl; cl = cl->next) {

        /* a body that nginx had to spill to a file is too large for us */

        if (cl->buf->in_file) {
            size = ctx->conf->max_body_size + 1;
            break;
        }

        size += ngx_buf_size(cl->buf);
    }

    if (size > (off_t) ctx->conf->max_body_size) {
        return ngx_http_checkout_invalid(ctx,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "body_too_large",
                                         "the body is larger than the "
                                         "checkout accepts");
    }

    if (size == 0) {
        return ngx_http_checkout_invalid(ctx, NGX_HTTP_BAD_REQUEST,
                                         "empty_body", "the body is empty");
    }

    err = ngx_http_checkout_json_parse(r->pool, r->request_body->bufs,
                                       ctx->conf->max_depth, &ctx->cart);

    switch (err) {

    case NGX_HTTP_CHECKOUT_JSON_OK:
        break;

    case NGX_HTTP_CHECKOUT_JSON_INVALID_UTF8:
        return ngx_http_checkout_invalid(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_utf8",
                                         "the body is not valid UTF-8");

    case NGX_HTTP_CHECKOUT_JSON_MALFORMED:
        return ngx_http_checkout_invalid(ctx, NGX_HTTP_BAD_REQUEST,
                                         "malformed_json",
                                         "the body is not valid JSON");

    case NGX_HTTP_CHECKOUT_JSON_TOO_DEEP:
        return ngx_http_checkout_invalid(ctx, NGX_HTTP_CHECKOUT_UNPROCESSABLE,
                                         "too_deep",
                                         "the body nests objects and arrays "
                                         "deeper than the checkout accepts");

    default: /* NGX_HTTP_CHECKOUT_JSON_NOMEM */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->cart->type != NGX_HTTP_CHECKOUT_JSON_OBJECT) {
        return ngx_http_checkout_invalid(ctx, NGX_HTTP_CHECKOUT_UNPROCESSABLE,
                                         "not_an_object",
                                         "the body must be a JSON object");
    }

    return NGX_OK;
}


/* "chk_" and base62 characters drawn without bias from getrandom(2) */

static ngx_int_t
ngx_http_checkout_create_id(ngx_http_request_t *r, ngx_str_t *id)
{
    u_char      *p, *last, rnd[64];
    ssize_t      n, i;

    /* id->len is set last: $checkout_id must not see a half-made id */

    id->data = ngx_pnalloc(r->pool, CHECKOUT_ID_LEN);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(id->data, CHECKOUT_ID_PREFIX,
                   sizeof(CHECKOUT_ID_PREFIX) - 1);
    last = id->data + CHECKOUT_ID_LEN;

    while (p < last) {
        n = getrandom(rnd, sizeof(rnd), 0);

        if (n <= 0) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, ngx_errno,
                          "getrandom() failed");
            return NGX_ERROR;
        }

        /* 248 is the largest multiple of 62 in a byte */

        for (i = 0; i < n && p < last; i++) {
            if (rnd[i] < 248) {
                *p++ = ngx_http_checkout_id_alphabet[rnd[i] % 62];
            }
        }
    }

    id->len = CHECKOUT_ID_LEN;

    return NGX_OK;
}


static void
ngx_http_checkout_resume(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_checkout_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_checkout_module);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout resume: phase %d", ctx->phase);

    /* the connection's write events land here too: act on a result only */

    switch (ctx->phase) {

    case NGX_HTTP_CHECKOUT_PHASE_GATE:
        if (ctx->command) {
            return;
        }

        rc = ngx_http_checkout_pass_gate(r, ctx);
        break;

    case NGX_HTTP_CHECKOUT_PHASE_STEPS:
        if (!ctx->steps[ctx->current].done) {
            return;
        }

        rc = ngx_http_checkout_advance(r, ctx);
        break;

    case NGX_HTTP_CHECKOUT_PHASE_PUBLISH:
        if (ctx->command) {
            return;
        }

        rc = ngx_http_checkout_send_reply(r, ctx);
        break;

    default: /* NGX_HTTP_CHECKOUT_PHASE_REPLIED */
        return;
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * Runs the steps in order from the current one.  Returns NGX_DONE while a
 * step or the decision's record is pending, or what sending the reply
 * returned.
 */

static ngx_int_t
ngx_http_checkout_advance(ngx_http_request_t *r, ngx_http_checkout_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_http_checkout_step_t  *step;

    for ( ;; ) {
        step = &ctx->steps[ctx->current];

        if (!step->started) {
            rc = ngx_http_checkout_step_start(r, ctx, step);

            if (rc == NGX_OK) {
                return NGX_DONE;
            }

            /* the budget ran out before the step, or it could not start */

            ctx->outcome = NGX_HTTP_CHECKOUT_FAILED;
            ctx->decisive = step;

            if (rc == NGX_DECLINED) {
                step->verdict = NGX_HTTP_CHECKOUT_STEP_TIMEOUT;
                ctx->status = NGX_HTTP_GATEWAY_TIME_OUT;

            } else {
                step->verdict = NGX_HTTP_CHECKOUT_STEP_ERROR;
                ctx->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            break;
        }

        if (step->verdict == NGX_HTTP_CHECKOUT_STEP_PASSED
            && ctx->current + 1 < ctx->nsteps)
        {
            ctx->current++;
            continue;
        }

        ngx_http_checkout_decide(ctx, step);
        break;
    }

    return ngx_http_checkout_conclude(r, ctx);
}


/*
 * The decision is recorded before the client hears it: the event and the
 * checkout's state go to Redis (or to the spool) first.
 */

static ngx_int_t
ngx_http_checkout_conclude(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (ngx_http_checkout_build_reply(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->phase = NGX_HTTP_CHECKOUT_PHASE_PUBLISH;

    rc = ngx_http_checkout_event_publish(r, ctx);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_checkout_send_reply(r, ctx);
}


/*
 * pending_review is said only where the service may have acted on the
 * request: a request that never left nginx has certainly failed.
 */

static void
ngx_http_checkout_decide(ngx_http_checkout_ctx_t *ctx,
    ngx_http_checkout_step_t *step)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "checkout decide: step \"%V\", verdict %d",
                   &step->conf->name, step->verdict);

    ctx->decisive = step;

    switch (step->verdict) {

    case NGX_HTTP_CHECKOUT_STEP_PASSED:
        ctx->outcome = NGX_HTTP_CHECKOUT_CONFIRMED;
        ctx->status = NGX_HTTP_CREATED;
        return;

    case NGX_HTTP_CHECKOUT_STEP_DECLINED:
        ctx->outcome = NGX_HTTP_CHECKOUT_DECLINED;
        ctx->status = step->status;
        return;

    case NGX_HTTP_CHECKOUT_STEP_ACTION:
        ctx->outcome = NGX_HTTP_CHECKOUT_REQUIRES_ACTION;
        ctx->status = NGX_HTTP_ACCEPTED;
        return;

    case NGX_HTTP_CHECKOUT_STEP_TIMEOUT:
        if (step->conf->timeout_pending && !step->unsent) {
            ctx->outcome = NGX_HTTP_CHECKOUT_PENDING_REVIEW;
            ctx->status = NGX_HTTP_ACCEPTED;
            return;
        }

        ctx->outcome = NGX_HTTP_CHECKOUT_FAILED;

        /* nginx's own proxy_read_timeout is the step's, not the budget's */

        if (step->cut_off && step->budget_limited) {
            ctx->budget_exhausted = 1;
            ctx->status = NGX_HTTP_GATEWAY_TIME_OUT;

        } else {
            ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        }

        return;

    default: /* NGX_HTTP_CHECKOUT_STEP_ERROR */
        if (step->conf->error_pending && !step->unsent) {
            ctx->outcome = NGX_HTTP_CHECKOUT_PENDING_REVIEW;
            ctx->status = NGX_HTTP_ACCEPTED;
            return;
        }

        ctx->outcome = NGX_HTTP_CHECKOUT_FAILED;
        ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
    }
}


/*
 * A client that goes away mid-checkout must leave no timer and no Redis
 * callback pointing at the request.
 */

static void
ngx_http_checkout_cleanup(void *data)
{
    ngx_http_checkout_ctx_t *ctx = data;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (ctx->command) {
        ngx_http_checkout_redis_cancel(ctx->command);
        ctx->command = NULL;
    }
}
