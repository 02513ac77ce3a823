
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"


#define ngx_http_checkout_state_field(name)  ngx_string(name),


typedef struct {
    ngx_http_request_t              *request;
    ngx_http_checkout_redis_cmd_t   *command;
    ngx_str_t                        id;
} ngx_http_checkout_status_ctx_t;


static ngx_int_t ngx_http_checkout_status_id_valid(ngx_str_t *id);
static void ngx_http_checkout_status_done(void *data, redisReply *reply);
static ngx_int_t ngx_http_checkout_status_send(ngx_http_request_t *r,
    ngx_http_checkout_status_ctx_t *sctx, redisReply *reply);
static void ngx_http_checkout_status_field(
    ngx_http_checkout_json_writer_t *w, redisReply *key, redisReply *value);
static ngx_int_t ngx_http_checkout_status_error(ngx_http_request_t *r,
    ngx_uint_t status, char *error, char *message);
static void ngx_http_checkout_status_cleanup(void *data);


/* the state hash's own fields; every other field is a follow-up task */
static ngx_str_t  ngx_http_checkout_state_fields[] = {
    CHECKOUT_STATE_FIELDS(ngx_http_checkout_state_field)
    ngx_null_string
};


ngx_int_t
ngx_http_checkout_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    size_t                           argvlen[2];
    const char                      *argv[2];
    ngx_pool_cleanup_t              *cln;
    ngx_http_variable_value_t       *vv;
    ngx_http_checkout_loc_conf_t    *cklcf;
    ngx_http_checkout_status_ctx_t  *sctx;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout status handler");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_checkout_status_error(r, NGX_HTTP_NOT_ALLOWED,
                                              "method_not_allowed",
                                              "the status is read with GET");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    cklcf = ngx_http_get_module_loc_conf(r, ngx_http_checkout_module);

    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_checkout_status_ctx_t));
    if (sctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sctx->request = r;

    vv = ngx_http_get_indexed_variable(r, cklcf->status_index);

    if (vv == NULL || vv->not_found) {
        return ngx_http_checkout_status_error(r, NGX_HTTP_NOT_FOUND,
                                              "not_found",
                                              "no such checkout");
    }

    sctx->id.data = vv->data;
    sctx->id.len = vv->len;

    if (ngx_http_checkout_status_id_valid(&sctx->id) != NGX_OK) {
        return ngx_http_checkout_status_error(r, NGX_HTTP_NOT_FOUND,
                                              "not_found",
                                              "no such checkout");
    }

    argv[0] = "HGETALL";
    argvlen[0] = sizeof("HGETALL") - 1;

    argvlen[1] = sizeof(CHECKOUT_STATE_KEY_PREFIX) - 1 + sctx->id.len;
    argv[1] = ngx_pnalloc(r->pool, argvlen[1]);
    if (argv[1] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf((u_char *) argv[1], CHECKOUT_STATE_KEY_PREFIX "%V",
                &sctx->id);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sctx->command = ngx_http_checkout_redis_command(cklcf->redis->redis,
                                                cklcf->redis_timeout, 0,
                                                ngx_http_checkout_status_done,
                                                sctx, 2, argv, argvlen);

    if (sctx->command == NULL) {
        return ngx_http_checkout_status_send(r, sctx, NULL);
    }

    cln->handler = ngx_http_checkout_status_cleanup;
    cln->data = sctx;

    r->main->count++;

    return NGX_DONE;
}


/* ids are made by the module: anything else is not one, ask no one */

static ngx_int_t
ngx_http_checkout_status_id_valid(ngx_str_t *id)
{
    u_char      c;
    ngx_uint_t  i;

    if (id->len != CHECKOUT_ID_LEN
        || ngx_strncmp(id->data, CHECKOUT_ID_PREFIX,
                       sizeof(CHECKOUT_ID_PREFIX) - 1) != 0)
    {
        return NGX_ERROR;
    }

    for (i = sizeof(CHECKOUT_ID_PREFIX) - 1; i < id->len; i++) {
        c = id->data[i];

        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')
              || (c >= 'a' && c <= 'z')))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_checkout_status_done(void *data, redisReply *reply)
{
    ngx_http_checkout_status_ctx_t *sctx = data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = sctx->request;
    c = r->connection;

    sctx->command = NULL;

    ngx_http_finalize_request(r, ngx_http_checkout_status_send(r, sctx,
                                                               reply));
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_checkout_status_send(ngx_http_request_t *r,
    ngx_http_checkout_status_ctx_t *sctx, redisReply *reply)
{
    ngx_str_t                         body, *known;
    ngx_uint_t                        i, pending;
    redisReply                       *k, *v;
    ngx_http_checkout_loc_conf_t     *cklcf;
    ngx_http_checkout_json_writer_t   w;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_str_set(&body, "1");

        if (ngx_http_checkout_add_header(r, "Retry-After", &body) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_checkout_status_error(r,
                                       NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "unavailable",
                                       "the checkout state cannot be read "
                                       "now");
    }

    if (reply->elements == 0) {
        return ngx_http_checkout_status_error(r, NGX_HTTP_NOT_FOUND,
                                              "not_found",
                                              "no such checkout");
    }

    if (ngx_http_checkout_json_writer_init(&w, r->pool) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pending = 0;

    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);
    ngx_http_checkout_json_cstr(&w, "checkoutId");
    ngx_http_checkout_json_str(&w, &sctx->id);

    for (i = 0; i + 1 < reply->elements; i += 2) {
        k = reply->element[i];
        v = reply->element[i + 1];

        if (ngx_http_checkout_redis_is(k, CHECKOUT_STATE_STATUS)
            || ngx_http_checkout_redis_is(k, CHECKOUT_STATE_ORDER_ID))
        {
            ngx_http_checkout_status_field(&w, k, v);

            if (ngx_http_checkout_redis_is(k, CHECKOUT_STATE_STATUS)
                && ngx_http_checkout_redis_is(v,
                                              CHECKOUT_OUTCOME_PENDING_REVIEW))
            {
                pending = 1;
            }
        }
    }

    ngx_http_checkout_json_cstr(&w, "tasks");
    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    for (i = 0; i + 1 < reply->elements; i += 2) {
        k = reply->element[i];
        v = reply->element[i + 1];

        for (known = ngx_http_checkout_state_fields; known->len; known++) {
            if (known->len == k->len
                && ngx_strncmp(known->data, k->str, k->len) == 0)
            {
                break;
            }
        }

        if (known->len == 0) {
            ngx_http_checkout_status_field(&w, k, v);
        }
    }

    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    if (pending) {
        cklcf = ngx_http_get_module_loc_conf(r, ngx_http_checkout_module);

        ngx_http_checkout_json_cstr(&w, "nextCheckAfterSeconds");
        ngx_http_checkout_json_int(&w, cklcf->retry_after);
    }

    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    /* the reply is freed after this callback: the body is in the pool */

    if (ngx_http_checkout_json_result(&w, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_checkout_send_json(r, NGX_HTTP_OK, &body);
}


/* one field of the state hash, as a member of the status object */

static void
ngx_http_checkout_status_field(ngx_http_checkout_json_writer_t *w,
    redisReply *key, redisReply *value)
{
    ngx_str_t  s;

    s.data = (u_char *) key->str;
    s.len = key->len;
    ngx_http_checkout_json_str(w, &s);

    s.data = (u_char *) value->str;
    s.len = value->len;
    ngx_http_checkout_json_str(w, &s);
}


static ngx_int_t
ngx_http_checkout_status_error(ngx_http_request_t *r, ngx_uint_t status,
    char *error, char *message)
{
    ngx_str_t                         body;
    ngx_http_checkout_json_writer_t   w;

    if (ngx_http_checkout_json_writer_init(&w, r->pool) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);
    ngx_http_checkout_json_cstr(&w, "error");
    ngx_http_checkout_json_cstr(&w, error);
    ngx_http_checkout_json_cstr(&w, "message");
    ngx_http_checkout_json_cstr(&w, message);
    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_OBJECT);

    if (ngx_http_checkout_json_result(&w, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_checkout_send_json(r, status, &body);
}


static void
ngx_http_checkout_status_cleanup(void *data)
{
    ngx_http_checkout_status_ctx_t *sctx = data;

    if (sctx->command) {
        ngx_http_checkout_redis_cancel(sctx->command);
        sctx->command = NULL;
    }
}
