
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"


static ngx_int_t ngx_http_checkout_step_body(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_http_checkout_step_t *step,
    ngx_http_request_body_t **body);
static ngx_int_t ngx_http_checkout_step_headers(ngx_http_request_t *r,
    ngx_http_headers_in_t *headers_in, off_t length);
static ngx_table_elt_t *ngx_http_checkout_step_header(ngx_list_t *headers,
    char *name, char *lowcase_name, ngx_str_t *value);
static ngx_int_t ngx_http_checkout_step_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc);
static void ngx_http_checkout_step_judge(ngx_http_request_t *sr,
    ngx_http_checkout_step_t *step, ngx_int_t rc);
static void ngx_http_checkout_step_judge_reply(ngx_http_request_t *sr,
    ngx_http_checkout_step_t *step, ngx_chain_t *body);
static void ngx_http_checkout_step_finish(ngx_http_checkout_step_t *step);
static void ngx_http_checkout_step_deadline(ngx_event_t *ev);
static ngx_int_t ngx_http_checkout_step_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


/*
 * "results": the replies of the first n steps that answered with JSON, by
 * step name; for a step's document and for the event's data alike.
 */

void
ngx_http_checkout_step_results(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_ctx_t *ctx, ngx_uint_t n)
{
    ngx_uint_t                 i;
    ngx_http_checkout_step_t  *step;

    ngx_http_checkout_json_literal(w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    for (i = 0; i < n; i++) {
        step = &ctx->steps[i];

        if (!step->done || step->reply == NULL) {
            continue;
        }

        ngx_http_checkout_json_str(w, &step->conf->name);
        ngx_http_checkout_json_value(w, step->reply);
    }

    ngx_http_checkout_json_close(w, NGX_HTTP_CHECKOUT_JSON_OBJECT);
}


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


static ngx_str_t  ngx_http_checkout_post_method = ngx_string("POST");

static ngx_str_t  ngx_http_checkout_json_type =
    ngx_string("application/json");


/*
 * Client headers a step must not see: the body is ours, and a step reply
 * must come back whole and uncompressed to be parsed.
 */
static ngx_str_t  ngx_http_checkout_hidden_headers[] = {
    ngx_string("content-length"),
    ngx_string("content-type"),
    ngx_string("content-encoding"),
    ngx_string("content-digest"),
    ngx_string("repr-digest"),
    ngx_string("digest"),
    ngx_string("transfer-encoding"),
    ngx_string("expect"),
    ngx_string("accept-encoding"),
    ngx_string("range"),
    ngx_string("if-range"),
    ngx_string("if-match"),
    ngx_string("if-none-match"),
    ngx_string("if-modified-since"),
    ngx_string("if-unmodified-since"),
    ngx_null_string
};


void
ngx_http_checkout_step_init(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx)
{
    ctx->timer.handler = ngx_http_checkout_step_deadline;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;
}


/*
 * Steps are background in-memory subrequests.  Background, because the
 * checkout must be able to answer at a deadline while a step is still
 * running: a regular subrequest holds the parent's output until it ends.
 * At the deadline the step's upstream request is ended the way nginx ends
 * it for a client that is gone (see ngx_http_checkout_step_deadline), so
 * the backend connection is closed and the client's connection is free at
 * once.  Measured on Debian's nginx 1.22.1: a 10 s backend behind a 200 ms
 * step is answered in 0.20 s and the next request on the same keepalive
 * connection at once; background subrequests alone answer in time but
 * hold the connection for the 10 s.  A step that is not proxied cannot be
 * cut off: the reply still goes out at the deadline, and the subrequest
 * finishes on its own.
 */

ngx_int_t
ngx_http_checkout_step_start(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_http_checkout_step_t *step)
{
    ngx_msec_t                   budget;
    ngx_http_request_t          *sr;
    ngx_http_headers_in_t        headers_in;
    ngx_http_request_body_t     *body;
    ngx_http_post_subrequest_t  *ps;

    step->start = ngx_http_checkout_now();

    budget = (ctx->deadline > step->start)
             ? (ngx_msec_t) ((ctx->deadline - step->start + 999) / 1000) : 0;

    if (budget == 0) {
        ctx->budget_exhausted = 1;
        return NGX_DECLINED;
    }

    if (step->conf->timeout != NGX_CONF_UNSET_MSEC
        && step->conf->timeout < budget)
    {
        budget = step->conf->timeout;

    } else {
        step->budget_limited = 1;
    }

    step->budget = budget;

    /* all that can fail is done before the subrequest exists */

    if (ngx_http_checkout_step_body(r, ctx, step, &body) != NGX_OK
        || ngx_http_checkout_step_headers(r, &headers_in,
                                          body->buf->last - body->buf->pos)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_checkout_step_done;
    ps->data = step;

    if (ngx_http_subrequest(r, &step->conf->uri, &step->conf->args, &sr, ps,
                            NGX_HTTP_SUBREQUEST_IN_MEMORY
                            |NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sr->method = NGX_HTTP_POST;
    sr->method_name = ngx_http_checkout_post_method;
    sr->request_body = body;
    sr->headers_in = headers_in;

    step->sr = sr;
    step->started = 1;

    ngx_add_timer(&ctx->timer, budget);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout step \"%V\" started, \"%V\", budget %M",
                   &step->conf->name, &step->conf->uri, budget);

    return NGX_OK;
}


/* the step document: who we are, how long the step has, what came before */

static ngx_int_t
ngx_http_checkout_step_body(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_http_checkout_step_t *step,
    ngx_http_request_body_t **body)
{
    ngx_buf_t                        *b;
    ngx_str_t                         doc;
    ngx_http_request_body_t          *rb;
    ngx_http_checkout_json_writer_t   w;

    if (ngx_http_checkout_json_writer_init(&w, r->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    ngx_http_checkout_json_cstr(&w, "checkoutId");
    ngx_http_checkout_json_str(&w, &ctx->id);

    ngx_http_checkout_json_cstr(&w, "idempotencyKey");

    if (ctx->idempotency_key.len) {
        ngx_http_checkout_json_str(&w, &ctx->idempotency_key);

    } else {
        ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_NULL);
    }

    ngx_http_checkout_json_cstr(&w, "step");
    ngx_http_checkout_json_str(&w, &step->conf->name);

    ngx_http_checkout_json_cstr(&w, "budgetMs");
    ngx_http_checkout_json_int(&w, step->budget);

    ngx_http_checkout_json_cstr(&w, "cart");
    ngx_http_checkout_json_value(&w, ctx->cart);

    ngx_http_checkout_json_cstr(&w, "results");
    ngx_http_checkout_step_results(&w, ctx, step - ctx->steps);

    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    if (ngx_http_checkout_json_result(&w, &doc) != NGX_OK) {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    /* start and end let the upstream module rewind it for a retry */

    b->temporary = 1;
    b->start = doc.data;
    b->pos = doc.data;
    b->last = doc.data + doc.len;
    b->end = b->last;
    b->last_buf = 1;

    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    if (rb == NULL) {
        return NGX_ERROR;
    }

    rb->bufs = ngx_alloc_chain_link(r->pool);
    if (rb->bufs == NULL) {
        return NGX_ERROR;
    }

    rb->bufs->buf = b;
    rb->bufs->next = NULL;
    rb->buf = b;

    *body = rb;

    return NGX_OK;
}


/*
 * A subrequest starts with a copy of the client's headers_in; a step's
 * copy gets its own list, without the headers that describe the client's
 * body, and with its own Content-Type and Content-Length.
 */

static ngx_int_t
ngx_http_checkout_step_headers(ngx_http_request_t *r,
    ngx_http_headers_in_t *headers_in, off_t length)
{
    ngx_str_t         *hidden, value;
    ngx_uint_t         i;
    ngx_list_part_t   *part;
    ngx_table_elt_t   *h, *header;

    *headers_in = r->headers_in;

    if (ngx_list_init(&headers_in->headers, r->pool, 8,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    headers_in->transfer_encoding = NULL;
    headers_in->expect = NULL;
    headers_in->range = NULL;
    headers_in->if_range = NULL;
    headers_in->if_match = NULL;
    headers_in->if_none_match = NULL;
    headers_in->if_modified_since = NULL;
    headers_in->if_unmodified_since = NULL;
#if (NGX_HTTP_GZIP || NGX_HTTP_HEADERS)
    headers_in->accept_encoding = NULL;
#endif
    headers_in->chunked = 0;

    part = &r->headers_in.headers.part;
    header = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            header = part->elts;
            i = 0;
        }

        for (hidden = ngx_http_checkout_hidden_headers; hidden->len; hidden++)
        {
            if (header[i].key.len == hidden->len
                && ngx_strncasecmp(header[i].key.data, hidden->data,
                                   hidden->len)
                   == 0)
            {
                break;
            }
        }

        if (hidden->len) {
            continue;
        }

        h = ngx_list_push(&headers_in->headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = header[i];
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
    }

    headers_in->content_type =
        ngx_http_checkout_step_header(&headers_in->headers, "Content-Type",
                                      "content-type",
                                      &ngx_http_checkout_json_type);

    value.data = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%O", length) - value.data;

    headers_in->content_length =
        ngx_http_checkout_step_header(&headers_in->headers, "Content-Length",
                                      "content-length", &value);
    headers_in->content_length_n = length;

    if (headers_in->content_type == NULL
        || headers_in->content_length == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_table_elt_t *
ngx_http_checkout_step_header(ngx_list_t *headers, char *name,
    char *lowcase_name, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(headers);
    if (h == NULL) {
        return NULL;
    }

    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;
    h->lowcase_key = (u_char *) lowcase_name;
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return h;
}


/*
 * The post_subrequest handler only records the step's result and wakes
 * the checkout: running the checkout from here could touch a request that
 * nginx is about to free.  It returns NGX_OK whatever the step did, so
 * that a failed step ends only the subrequest, never the client's request.
 */

static ngx_int_t
ngx_http_checkout_step_done(ngx_http_request_t *r, void *data, ngx_int_t rc)
{
    ngx_http_checkout_step_t *step = data;

    if (step->done) {
        return NGX_OK;
    }

    /* the reply is still on its way, e.g. read from a temporary file */

    if (rc == NGX_AGAIN || (rc == NGX_OK && r->buffered)) {
        return rc;
    }

    ngx_http_checkout_step_judge(r, step, rc);
    ngx_http_checkout_step_finish(step);

    return NGX_OK;
}


static void
ngx_http_checkout_step_judge(ngx_http_request_t *sr,
    ngx_http_checkout_step_t *step, ngx_int_t rc)
{
    ngx_uint_t   status;
    ngx_chain_t  body;

    /* a request that never left nginx cannot have had an effect */

    step->unsent = (sr->upstream && !sr->upstream->request_sent);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "checkout step \"%V\" failed", &step->conf->name);
        step->verdict = NGX_HTTP_CHECKOUT_STEP_ERROR;
        return;
    }

    /* a status nginx generated itself: no service answered */

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "checkout step \"%V\" got no answer, nginx status %i",
                      &step->conf->name, rc);

        step->verdict = (rc == NGX_HTTP_GATEWAY_TIME_OUT)
                        ? NGX_HTTP_CHECKOUT_STEP_TIMEOUT
                        : NGX_HTTP_CHECKOUT_STEP_ERROR;
        return;
    }

    status = sr->headers_out.status;
    step->status = status;

    if (step->too_large) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "checkout step \"%V\" answered %ui with a body larger "
                      "than subrequest_output_buffer_size",
                      &step->conf->name, status);
        step->verdict = NGX_HTTP_CHECKOUT_STEP_ERROR;
        return;
    }

    body.buf = step->body;
    body.next = NULL;

    if (status >= NGX_HTTP_OK && status < NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_http_checkout_step_judge_reply(sr, step, &body);
        return;
    }

    if (status >= NGX_HTTP_BAD_REQUEST
        && status < NGX_HTTP_INTERNAL_SERVER_ERROR
        && status != NGX_HTTP_REQUEST_TIME_OUT
        && status != NGX_HTTP_TOO_MANY_REQUESTS)
    {
        /* the reason of a decline is optional: a bare 4xx still declines */

        if (step->body == NULL
            || ngx_http_checkout_json_parse(sr->pool, &body,
                                            NGX_HTTP_CHECKOUT_STEP_MAX_DEPTH,
                                            &step->reply)
               != NGX_HTTP_CHECKOUT_JSON_OK)
        {
            step->reply = NULL;
        }

        step->verdict = NGX_HTTP_CHECKOUT_STEP_DECLINED;
        return;
    }

    ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                  "checkout step \"%V\" answered %ui",
                  &step->conf->name, status);

    step->verdict = NGX_HTTP_CHECKOUT_STEP_ERROR;
}


static void
ngx_http_checkout_step_judge_reply(ngx_http_request_t *sr,
    ngx_http_checkout_step_t *step, ngx_chain_t *body)
{
    ngx_http_checkout_json_t        *v;
    ngx_http_checkout_json_error_e   err;

    err = NGX_HTTP_CHECKOUT_JSON_MALFORMED;

    if (body->buf) {
        err = ngx_http_checkout_json_parse(sr->pool, body,
                                           NGX_HTTP_CHECKOUT_STEP_MAX_DEPTH,
                                           &step->reply);
    }

    if (err != NGX_HTTP_CHECKOUT_JSON_OK
        || step->reply->type != NGX_HTTP_CHECKOUT_JSON_OBJECT)
    {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "checkout step \"%V\" answered %ui without "
                      "a JSON object", &step->conf->name, step->status);

        step->reply = NULL;
        step->verdict = NGX_HTTP_CHECKOUT_STEP_ERROR;
        return;
    }

    v = ngx_http_checkout_json_get(step->reply, "status");

    if (v
        && v->type == NGX_HTTP_CHECKOUT_JSON_STRING
        && v->value.len == sizeof("requires_action") - 1
        && ngx_strncmp(v->value.data, "requires_action", v->value.len) == 0)
    {
        step->verdict = NGX_HTTP_CHECKOUT_STEP_ACTION;
        return;
    }

    step->verdict = NGX_HTTP_CHECKOUT_STEP_PASSED;
}


static void
ngx_http_checkout_step_finish(ngx_http_checkout_step_t *step)
{
    ngx_http_request_t       *r;
    ngx_http_checkout_ctx_t  *ctx;

    ctx = step->ctx;
    r = ctx->request;

    step->done = 1;
    step->duration = ngx_http_checkout_now() - step->start;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout step \"%V\" done, verdict %d",
                   &step->conf->name, step->verdict);

    ngx_http_checkout_wake(r);
}


/*
 * Stock nginx has no call to end a running subrequest early.  The step's
 * upstream request is ended by its own cleanup handler, as nginx ends
 * every upstream request of a client that went away: it stops a resolver
 * query, closes the backend connection (not kept alive, and without
 * counting a failure against the peer) and releases the subrequest with
 * NGX_DONE, which does not call the post_subrequest handler.  The step's
 * result is then recorded here.  A subrequest without an upstream request
 * to end, or in the middle of an aio read, is left to finish in the
 * background.
 */

static void
ngx_http_checkout_step_deadline(ngx_event_t *ev)
{
    ngx_connection_t          *c;
    ngx_http_request_t        *sr;
    ngx_http_upstream_t       *u;
    ngx_http_checkout_ctx_t   *ctx;
    ngx_http_checkout_step_t  *step;

    ctx = ev->data;
    step = &ctx->steps[ctx->current];
    sr = step->sr;
    u = sr->upstream;
    c = ctx->request->connection;

    ngx_http_set_log_request(c->log, ctx->request);

    step->verdict = NGX_HTTP_CHECKOUT_STEP_TIMEOUT;
    step->cut_off = 1;

    /* during an aio read the reply is already here: let it finish */

    if (u && u->cleanup && !sr->aio) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "checkout step \"%V\": upstream timed out after %M ms, "
                      "request cut off", &step->conf->name, step->budget);

        step->unsent = !u->request_sent;
        (*u->cleanup)(sr);

    } else {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "checkout step \"%V\" timed out and is left to finish "
                      "in the background", &step->conf->name);
    }

    ngx_http_checkout_step_finish(step);
    ngx_http_run_posted_requests(c);
}


/*
 * A step's reply is captured here rather than by the postpone filter's
 * in-memory path: that path answers a reply larger than its buffer with
 * NGX_ERROR, which the copy filter turns into an error on the client's
 * connection.  Here an oversized reply only marks the step.  The buffers
 * are marked consumed, so the upstream module can reuse them.
 */

ngx_int_t
ngx_http_checkout_step_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_checkout_step_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_checkout_step_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                     len, size;
    ngx_buf_t                 *b;
    ngx_chain_t               *cl;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_checkout_step_t  *step;

    /* the post_subrequest handler marks a step even after a redirect */

    if (r == r->main
        || r->post_subrequest == NULL
        || r->post_subrequest->handler != ngx_http_checkout_step_done)
    {
        return ngx_http_next_body_filter(r, in);
    }

    step = r->post_subrequest->data;

    if (step->body == NULL) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        size = clcf->subrequest_output_buffer_size;

        if (r->headers_out.content_length_n > (off_t) size) {
            step->too_large = 1;
        }

        step->body = ngx_create_temp_buf(r->pool, size);
        if (step->body == NULL) {
            return NGX_ERROR;
        }
    }

    b = step->body;

    for (cl = in; cl; cl = cl->next) {
        len = cl->buf->last - cl->buf->pos;

        if (len > (size_t) (b->end - b->last)) {
            step->too_large = 1;
        }

        if (!step->too_large) {
            b->last = ngx_cpymem(b->last, cl->buf->pos, len);
        }

        cl->buf->pos = cl->buf->last;
    }

    return NGX_OK;
}
