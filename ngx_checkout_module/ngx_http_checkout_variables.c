
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"


static ngx_int_t ngx_http_checkout_variable_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_checkout_variable_outcome(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_checkout_variable_step_timings(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_checkout_variable_set(ngx_http_variable_value_t *v,
    ngx_str_t *value);


static ngx_http_variable_t  ngx_http_checkout_variables[] = {

    { ngx_string("checkout_id"), NULL,
      ngx_http_checkout_variable_id, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("checkout_outcome"), NULL,
      ngx_http_checkout_variable_outcome, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("checkout_step_timings"), NULL,
      ngx_http_checkout_variable_step_timings, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_checkout_variables_add(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_checkout_variables; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* the checkout lives on the main request; steps see it through r->main */

static ngx_int_t
ngx_http_checkout_variable_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_checkout_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_checkout_module);

    if (ctx == NULL || ctx->id.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_checkout_variable_set(v, &ctx->id);

    return NGX_OK;
}


static ngx_int_t
ngx_http_checkout_variable_outcome(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_checkout_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_checkout_module);

    if (ctx == NULL || ctx->outcome == NGX_HTTP_CHECKOUT_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_checkout_variable_set(v,
                                ngx_http_checkout_outcome_name(ctx->outcome));

    return NGX_OK;
}


static ngx_int_t
ngx_http_checkout_variable_step_timings(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                 timings;
    ngx_http_checkout_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_checkout_module);

    if (ctx == NULL || ctx->nsteps == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ngx_http_checkout_timings(r->pool, ctx, 0, &timings) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_checkout_variable_set(v, &timings);

    return NGX_OK;
}


static void
ngx_http_checkout_variable_set(ngx_http_variable_value_t *v, ngx_str_t *value)
{
    v->len = value->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = value->data;
}
