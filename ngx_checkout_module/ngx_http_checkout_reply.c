
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"


static void ngx_http_checkout_reply_confirmed(
    ngx_http_checkout_json_writer_t *w, ngx_http_checkout_ctx_t *ctx);
static void ngx_http_checkout_reply_declined(
    ngx_http_checkout_json_writer_t *w, ngx_http_checkout_ctx_t *ctx);
static void ngx_http_checkout_reply_failed(
    ngx_http_checkout_json_writer_t *w, ngx_http_checkout_ctx_t *ctx);
static void ngx_http_checkout_reply_pending(
    ngx_http_checkout_json_writer_t *w, ngx_http_checkout_ctx_t *ctx,
    ngx_str_t *status_url);
static void ngx_http_checkout_reply_message(
    ngx_http_checkout_json_writer_t *w, ngx_http_checkout_ctx_t *ctx,
    const char *fmt);
static ngx_int_t ngx_http_checkout_status_url(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_str_t *url);
static ngx_int_t ngx_http_checkout_send(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_uint_t status,
    ngx_http_checkout_reply_t *reply);


/*
 * The reply is made before it is sent: with an idempotency key it is
 * stored with the checkout's event, to be replayed byte for byte.
 */

ngx_int_t
ngx_http_checkout_build_reply(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    u_char                           *p;
    ngx_str_t                         url;
    ngx_http_checkout_json_t         *action;
    ngx_http_checkout_json_writer_t   w;

    if (ngx_http_checkout_json_writer_init(&w, r->pool) != NGX_OK
        || ngx_http_checkout_status_url(r, ctx, &url) != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    ngx_http_checkout_json_cstr(&w, "status");
    ngx_http_checkout_json_str(&w,
                               ngx_http_checkout_outcome_name(ctx->outcome));

    ngx_http_checkout_json_cstr(&w, "checkoutId");
    ngx_http_checkout_json_str(&w, &ctx->id);

    switch (ctx->outcome) {

    case NGX_HTTP_CHECKOUT_CONFIRMED:
        ngx_http_checkout_reply_confirmed(&w, ctx);
        ctx->reply.location = url;
        break;

    case NGX_HTTP_CHECKOUT_REQUIRES_ACTION:
        ngx_http_checkout_json_cstr(&w, "step");
        ngx_http_checkout_json_str(&w, &ctx->decisive->conf->name);

        ngx_http_checkout_json_cstr(&w, "action");

        action = ngx_http_checkout_json_get(ctx->decisive->reply, "action");

        if (action) {
            ngx_http_checkout_json_value(&w, action);

        } else {
            ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_NULL);
        }

        break;

    case NGX_HTTP_CHECKOUT_PENDING_REVIEW:
        ngx_http_checkout_reply_pending(&w, ctx, &url);
        ctx->reply.location = url;
        ctx->reply.retry_after.data = p;
        break;

    case NGX_HTTP_CHECKOUT_DECLINED:
        ngx_http_checkout_reply_declined(&w, ctx);
        break;

    default: /* NGX_HTTP_CHECKOUT_FAILED */
        ngx_http_checkout_reply_failed(&w, ctx);
        ctx->reply.retry_after.data = p;
    }

    if (ctx->reply.retry_after.data) {
        ctx->reply.retry_after.len = ngx_sprintf(p, "%T",
                                                 ctx->conf->retry_after)
                                     - p;
    }

    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    return ngx_http_checkout_json_result(&w, &ctx->reply.body);
}


ngx_int_t
ngx_http_checkout_send_reply(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    return ngx_http_checkout_send(r, ctx, ctx->status, &ctx->reply);
}


/* a stored reply, sent again as it was, and said to be a replay */

ngx_int_t
ngx_http_checkout_send_stored(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    ngx_int_t  status;
    ngx_str_t  replayed;

    status = ngx_atoi(ctx->stored.status.data, ctx->stored.status.len);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout reply replayed: %i", status);

    if (status < NGX_HTTP_OK || status > 599) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&replayed, "true");

    if (ngx_http_checkout_add_header(r, "Idempotent-Replayed", &replayed)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_checkout_send(r, ctx, status, &ctx->stored);
}


/* the last step created the order: its fields are the confirmation */

static void
ngx_http_checkout_reply_confirmed(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_ctx_t *ctx)
{
    ngx_http_checkout_json_t  *v;

    for (v = ctx->decisive->reply->child; v; v = v->next) {

        if ((v->key.len == 6 && ngx_strncmp(v->key.data, "status", 6) == 0)
            || (v->key.len == 10
                && ngx_strncmp(v->key.data, "checkoutId", 10) == 0))
        {
            continue;
        }

        ngx_http_checkout_json_str(w, &v->key);
        ngx_http_checkout_json_value(w, v);
    }
}


static void
ngx_http_checkout_reply_declined(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_ctx_t *ctx)
{
    ngx_http_checkout_json_t  *reason, *message;

    reason = ngx_http_checkout_json_get(ctx->decisive->reply, "reason");
    message = ngx_http_checkout_json_get(ctx->decisive->reply, "message");

    ngx_http_checkout_json_cstr(w, "step");
    ngx_http_checkout_json_str(w, &ctx->decisive->conf->name);

    ngx_http_checkout_json_cstr(w, "reason");

    if (reason && reason->type == NGX_HTTP_CHECKOUT_JSON_STRING) {
        ngx_http_checkout_json_str(w, &reason->value);

    } else {
        ngx_http_checkout_json_cstr(w, "declined");
    }

    if (message && message->type == NGX_HTTP_CHECKOUT_JSON_STRING) {
        ngx_http_checkout_json_cstr(w, "message");
        ngx_http_checkout_json_str(w, &message->value);

    } else {
        ngx_http_checkout_reply_message(w, ctx,
                                        "the %V step declined the checkout");
    }
}


static void
ngx_http_checkout_reply_failed(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_ctx_t *ctx)
{
    ngx_http_checkout_step_t  *step;

    step = ctx->decisive;

    ngx_http_checkout_json_cstr(w, "step");
    ngx_http_checkout_json_str(w, &step->conf->name);

    ngx_http_checkout_json_cstr(w, "reason");

    if (ctx->status == NGX_HTTP_INTERNAL_SERVER_ERROR) {
        ngx_http_checkout_json_cstr(w, "internal_error");
        ngx_http_checkout_reply_message(w, ctx,
                                        "the checkout could not run the %V "
                                        "step");

    } else if (step->verdict == NGX_HTTP_CHECKOUT_STEP_ERROR) {
        ngx_http_checkout_json_cstr(w, "unavailable");
        ngx_http_checkout_reply_message(w, ctx,
                                        "the %V step is unavailable");

    } else {
        ngx_http_checkout_json_cstr(w, "timeout");
        ngx_http_checkout_reply_message(w, ctx, ctx->budget_exhausted
                                 ? "the checkout ran out of time at the %V step"
                                 : "the %V step did not answer in time");
    }

    ngx_http_checkout_json_cstr(w, "retryable");
    ngx_http_checkout_json_literal(w, NGX_HTTP_CHECKOUT_JSON_TRUE);
}


static void
ngx_http_checkout_reply_pending(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_ctx_t *ctx, ngx_str_t *status_url)
{
    ngx_http_checkout_json_cstr(w, "step");
    ngx_http_checkout_json_str(w, &ctx->decisive->conf->name);

    ngx_http_checkout_reply_message(w, ctx,
                     (ctx->decisive->verdict == NGX_HTTP_CHECKOUT_STEP_TIMEOUT)
                     ? "the %V step did not answer in time; "
                       "the checkout is under review"
                     : "the %V step is unavailable; "
                       "the checkout is under review");

    ngx_http_checkout_json_cstr(w, "nextCheckAfterSeconds");
    ngx_http_checkout_json_int(w, ctx->conf->retry_after);

    ngx_http_checkout_json_cstr(w, "statusUrl");
    ngx_http_checkout_json_str(w, status_url);
}


/* a "message" naming the decisive step; fmt takes the step name once */

static void
ngx_http_checkout_reply_message(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_ctx_t *ctx, const char *fmt)
{
    u_char     *p;
    ngx_str_t   message, *name;

    name = &ctx->decisive->conf->name;

    p = ngx_pnalloc(ctx->request->pool, ngx_strlen(fmt) + name->len);
    if (p == NULL) {
        w->failed = 1;
        return;
    }

    message.data = p;
    message.len = ngx_sprintf(p, fmt, name) - p;

    ngx_http_checkout_json_cstr(w, "message");
    ngx_http_checkout_json_str(w, &message);
}


/* r->uri is decoded: escaped again, it cannot split a header */

static ngx_int_t
ngx_http_checkout_status_url(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_str_t *url)
{
    u_char     *p;
    uintptr_t   escape;

    escape = 2 * ngx_escape_uri(NULL, r->uri.data, r->uri.len,
                                NGX_ESCAPE_URI);

    url->len = r->uri.len + escape + 1 + ctx->id.len;
    url->data = ngx_pnalloc(r->pool, url->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = (u_char *) ngx_escape_uri(url->data, r->uri.data, r->uri.len,
                                  NGX_ESCAPE_URI);
    *p++ = '/';
    ngx_memcpy(p, ctx->id.data, ctx->id.len);

    return NGX_OK;
}


ngx_int_t
ngx_http_checkout_send_invalid(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    ngx_str_t                         allow;
    ngx_http_checkout_reply_t         reply;
    ngx_http_checkout_json_writer_t   w;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout reply invalid: %ui %s", ctx->status, ctx->error);

    ngx_memzero(&reply, sizeof(ngx_http_checkout_reply_t));

    if (ctx->status == NGX_HTTP_NOT_ALLOWED) {
        ngx_str_set(&allow, "POST");

        if (ngx_http_checkout_add_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_http_checkout_json_writer_init(&w, r->pool) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->status == NGX_HTTP_CONFLICT
        || ctx->status == NGX_HTTP_SERVICE_UNAVAILABLE)
    {
        ngx_str_set(&reply.retry_after, "1");
    }

    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);
    ngx_http_checkout_json_cstr(&w, "status");
    ngx_http_checkout_json_str(&w,
                               ngx_http_checkout_outcome_name(ctx->outcome));
    ngx_http_checkout_json_cstr(&w, "error");
    ngx_http_checkout_json_cstr(&w, ctx->error);
    ngx_http_checkout_json_cstr(&w, "message");
    ngx_http_checkout_json_cstr(&w, ctx->message);
    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    if (ngx_http_checkout_json_result(&w, &reply.body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_checkout_send(r, ctx, ctx->status, &reply);
}


ngx_int_t
ngx_http_checkout_add_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_checkout_send(ngx_http_request_t *r, ngx_http_checkout_ctx_t *ctx,
    ngx_uint_t status, ngx_http_checkout_reply_t *reply)
{
    ngx_str_t  timing;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout reply: %ui %V", status,
                   ngx_http_checkout_outcome_name(ctx->outcome));

    ctx->phase = NGX_HTTP_CHECKOUT_PHASE_REPLIED;

    if (ngx_http_checkout_timings(r->pool, ctx, 1, &timing) != NGX_OK
        || ngx_http_checkout_add_header(r, "Server-Timing", &timing) != NGX_OK
        || (reply->location.len
            && ngx_http_checkout_add_header(r, "Location", &reply->location)
               != NGX_OK)
        || (reply->retry_after.len
            && ngx_http_checkout_add_header(r, "Retry-After",
                                            &reply->retry_after)
               != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_checkout_send_json(r, status, &reply->body);
}


/*
 * A JSON body with its status: the one way every reply goes out.  None is
 * for a cache: each is about one checkout at one moment.
 */

ngx_int_t
ngx_http_checkout_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_str_t     no_store;
    ngx_chain_t   out;

    ngx_str_set(&no_store, "no-store");

    if (ngx_http_checkout_add_header(r, "Cache-Control", &no_store)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;

    if (status == NGX_HTTP_CHECKOUT_UNPROCESSABLE) {
        ngx_str_set(&r->headers_out.status_line, "422 Unprocessable Entity");
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = body->len;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


/*
 * Server-Timing ("validate;dur=12.3, total;dur=15.0", milliseconds) or
 * the $checkout_step_timings form ("validate:0.012", seconds).
 */

ngx_int_t
ngx_http_checkout_timings(ngx_pool_t *pool, ngx_http_checkout_ctx_t *ctx,
    ngx_uint_t server_timing, ngx_str_t *out)
{
    u_char                    *p;
    size_t                     len;
    uint64_t                   total;
    ngx_uint_t                 i;
    ngx_http_checkout_step_t  *step;

    len = sizeof("total;dur=.0") - 1 + NGX_INT64_LEN;

    for (i = 0; i < ctx->nsteps; i++) {
        len += ctx->steps[i].conf->name.len
               + sizeof(", ;dur=.000") - 1 + NGX_INT64_LEN;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (i = 0; i < ctx->nsteps; i++) {
        step = &ctx->steps[i];

        if (!step->started) {
            break;
        }

        if (server_timing) {
            p = ngx_sprintf(p, "%V;dur=%uL.%uL, ", &step->conf->name,
                            step->duration / 1000,
                            step->duration % 1000 / 100);

        } else {
            p = ngx_sprintf(p, "%s%V:%uL.%03uL", i ? "," : "",
                            &step->conf->name, step->duration / 1000000,
                            step->duration / 1000 % 1000);
        }
    }

    if (server_timing) {
        total = ngx_http_checkout_now() - ctx->start;
        p = ngx_sprintf(p, "total;dur=%uL.%uL", total / 1000,
                        total % 1000 / 100);
    }

    out->len = p - out->data;

    return NGX_OK;
}
