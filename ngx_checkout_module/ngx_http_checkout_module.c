
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"


#define NGX_HTTP_CHECKOUT_MAX_DEPTH_LIMIT  100


static void *ngx_http_checkout_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_checkout_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_checkout_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_checkout_postconfiguration(ngx_conf_t *cf);
static char *ngx_http_checkout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_checkout_step(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_checkout_conf_position(ngx_conf_t *cf,
    ngx_http_checkout_loc_conf_t *cklcf);
static ngx_int_t ngx_http_checkout_step_name_valid(ngx_str_t *name);
static char *ngx_http_checkout_step_param(ngx_conf_t *cf, ngx_str_t *value,
    char *name, ngx_uint_t *pending);
static char *ngx_http_checkout_max_depth_check(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_checkout_timeout_check(ngx_conf_t *cf, void *post,
    void *data);


static ngx_conf_post_handler_pt  ngx_http_checkout_max_depth_post =
    ngx_http_checkout_max_depth_check;

static ngx_conf_post_handler_pt  ngx_http_checkout_timeout_post =
    ngx_http_checkout_timeout_check;


static ngx_command_t  ngx_http_checkout_commands[] = {

    { ngx_string("checkout"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_checkout,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("checkout_step"),
      NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_checkout_step,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("checkout_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_checkout_loc_conf_t, timeout),
      &ngx_http_checkout_timeout_post },

    { ngx_string("checkout_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_checkout_loc_conf_t, max_body_size),
      NULL },

    { ngx_string("checkout_max_depth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_checkout_loc_conf_t, max_depth),
      &ngx_http_checkout_max_depth_post },

    { ngx_string("checkout_retry_after"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_checkout_loc_conf_t, retry_after),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_checkout_module_ctx = {
    ngx_http_checkout_preconfiguration,    /* preconfiguration */
    ngx_http_checkout_postconfiguration,   /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_checkout_create_loc_conf,     /* create location configuration */
    ngx_http_checkout_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_checkout_module = {
    NGX_MODULE_V1,
    &ngx_http_checkout_module_ctx,         /* module context */
    ngx_http_checkout_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_checkout_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_checkout_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_checkout_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->enable = 0;
     *     conf->steps = NULL;
     *     conf->file = NULL;
     *     conf->line = 0;
     */

    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->max_body_size = NGX_CONF_UNSET_SIZE;
    conf->max_depth = NGX_CONF_UNSET_UINT;
    conf->retry_after = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_checkout_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_checkout_loc_conf_t *prev = parent;
    ngx_http_checkout_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 2000);
    ngx_conf_merge_uint_value(conf->max_depth, prev->max_depth, 16);
    ngx_conf_merge_sec_value(conf->retry_after, prev->retry_after, 5);

    /* unset until a checkout location: its default is that location's */

    if (conf->max_body_size == NGX_CONF_UNSET_SIZE) {
        conf->max_body_size = prev->max_body_size;
    }

    if (conf->retry_after < 1) {
        conf->retry_after = 1;
    }

    /* "checkout" and its steps belong to one location, never inherited */

    if (conf->steps && !conf->enable) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"checkout_step\" is set in a location without "
                      "\"checkout\" in %s:%ui", conf->file, conf->line);
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    if (conf->steps == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"checkout\" has no \"checkout_step\" in %s:%ui",
                      conf->file, conf->line);
        return NGX_CONF_ERROR;
    }

    if (conf->max_body_size == NGX_CONF_UNSET_SIZE) {
        conf->max_body_size = clcf->client_body_buffer_size;
    }

    /* the body is parsed in memory, so it must fit nginx's body buffer */

    if (conf->max_body_size > clcf->client_body_buffer_size) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"checkout_max_body_size\" %uz is larger than "
                      "\"client_body_buffer_size\" %uz for \"checkout\" "
                      "in %s:%ui",
                      conf->max_body_size, clcf->client_body_buffer_size,
                      conf->file, conf->line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_checkout_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_checkout_variables_add(cf);
}


static ngx_int_t
ngx_http_checkout_postconfiguration(ngx_conf_t *cf)
{
    return ngx_http_checkout_step_filter_init(cf);
}


static char *
ngx_http_checkout(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_checkout_loc_conf_t *cklcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (cklcf->enable) {
        return "is duplicate";
    }

    cklcf->enable = 1;
    ngx_http_checkout_conf_position(cf, cklcf);

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_checkout_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_checkout_step(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_checkout_loc_conf_t *cklcf = conf;

    char                           *rv;
    u_char                         *p;
    ngx_str_t                      *value, s;
    ngx_uint_t                      i, pending;
    ngx_http_checkout_step_conf_t  *step, *other;

    value = cf->args->elts;

    if (ngx_http_checkout_step_name_valid(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid checkout step name \"%V\": use 1-%d "
                           "characters of a-z, 0-9, \"_\" and \"-\", "
                           "other than \"total\"",
                           &value[1], NGX_HTTP_CHECKOUT_STEP_NAME_LEN);
        return NGX_CONF_ERROR;
    }

    if (value[2].len == 0 || value[2].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid checkout step URI \"%V\": "
                           "it must start with \"/\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (cklcf->steps == NULL) {
        ngx_http_checkout_conf_position(cf, cklcf);

        cklcf->steps = ngx_array_create(cf->pool, 4,
                                        sizeof(ngx_http_checkout_step_conf_t));
        if (cklcf->steps == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    other = cklcf->steps->elts;

    for (i = 0; i < cklcf->steps->nelts; i++) {
        if (other[i].name.len == value[1].len
            && ngx_strncmp(other[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate checkout step name \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    step = ngx_array_push(cklcf->steps);
    if (step == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(step, sizeof(ngx_http_checkout_step_conf_t));

    step->name = value[1];
    step->uri = value[2];
    step->timeout = NGX_CONF_UNSET_MSEC;

    p = ngx_strlchr(step->uri.data, step->uri.data + step->uri.len, '?');

    if (p) {
        step->args.data = p + 1;
        step->args.len = step->uri.data + step->uri.len - p - 1;
        step->uri.len = p - step->uri.data;
    }

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            step->timeout = ngx_parse_time(&s, 0);

            if (step->timeout == (ngx_msec_t) NGX_ERROR || step->timeout == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid timeout \"%V\" of checkout step "
                                   "\"%V\"", &s, &step->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "on_timeout=", 11) == 0) {
            rv = ngx_http_checkout_step_param(cf, &value[i], "on_timeout",
                                              &pending);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            step->timeout_pending = pending;
            continue;
        }

        if (ngx_strncmp(value[i].data, "on_error=", 9) == 0) {
            rv = ngx_http_checkout_step_param(cf, &value[i], "on_error",
                                              &pending);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            step->error_pending = pending;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" of checkout step \"%V\"",
                           &value[i], &step->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Merge-time errors are found after the whole file is read; they name
 * where the location's "checkout", or else its first step, was written.
 */

static void
ngx_http_checkout_conf_position(ngx_conf_t *cf,
    ngx_http_checkout_loc_conf_t *cklcf)
{
    if (cklcf->file == NULL || cklcf->enable) {
        cklcf->file = cf->conf_file->file.name.data;
        cklcf->line = cf->conf_file->line;
    }
}


static ngx_int_t
ngx_http_checkout_step_name_valid(ngx_str_t *name)
{
    u_char      c;
    ngx_uint_t  i;

    if (name->len == 0 || name->len > NGX_HTTP_CHECKOUT_STEP_NAME_LEN) {
        return NGX_ERROR;
    }

    /* "total" is the Server-Timing entry of the whole checkout */

    if (name->len == 5 && ngx_strncmp(name->data, "total", 5) == 0) {
        return NGX_ERROR;
    }

    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
            || c == '_' || c == '-')
        {
            continue;
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


static char *
ngx_http_checkout_step_param(ngx_conf_t *cf, ngx_str_t *value, char *name,
    ngx_uint_t *pending)
{
    size_t  len;
    u_char  *p;

    len = ngx_strlen(name) + 1;
    p = value->data + len;

    if (value->len - len == 4 && ngx_strncmp(p, "fail", 4) == 0) {
        *pending = 0;
        return NGX_CONF_OK;
    }

    if (value->len - len == 7 && ngx_strncmp(p, "pending", 7) == 0) {
        *pending = 1;
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\": %s must be \"fail\" or "
                       "\"pending\"", value, name);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_checkout_max_depth_check(ngx_conf_t *cf, void *post, void *data)
{
    ngx_uint_t  *depth = data;

    if (*depth < 1 || *depth > NGX_HTTP_CHECKOUT_MAX_DEPTH_LIMIT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"checkout_max_depth\" must be between 1 and %d",
                           NGX_HTTP_CHECKOUT_MAX_DEPTH_LIMIT);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_checkout_timeout_check(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *timeout = data;

    if (*timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"checkout_timeout\" must be more than 0");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
