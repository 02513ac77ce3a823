
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"


#define NGX_HTTP_CHECKOUT_MAX_DEPTH_LIMIT  100


static void *ngx_http_checkout_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_checkout_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_checkout_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_checkout_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_checkout_postconfiguration(ngx_conf_t *cf);
static char *ngx_http_checkout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_checkout_step(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_checkout_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_checkout_stream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_checkout_event(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_checkout_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_checkout_idempotency(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_checkout_init_process(ngx_cycle_t *cycle);
static void ngx_http_checkout_exit_process(ngx_cycle_t *cycle);
static void ngx_http_checkout_conf_position(ngx_conf_t *cf,
    ngx_http_checkout_loc_conf_t *cklcf);
static ngx_int_t ngx_http_checkout_step_name_valid(ngx_str_t *name);
static char *ngx_http_checkout_step_param(ngx_conf_t *cf, ngx_str_t *value,
    char *name, ngx_uint_t *pending);
static ngx_int_t ngx_http_checkout_conf_time(ngx_conf_t *cf,
    ngx_str_t *value, size_t skip, ngx_msec_t *msec);
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

    { ngx_string("checkout_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_checkout_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("checkout_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_checkout_loc_conf_t, redis_timeout),
      &ngx_http_checkout_timeout_post },

    { ngx_string("checkout_stream"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_checkout_stream,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("checkout_event"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_checkout_event,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("checkout_state_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_checkout_loc_conf_t, state_ttl),
      NULL },

    { ngx_string("checkout_spool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_checkout_main_conf_t, spool),
      NULL },

    { ngx_string("checkout_idempotency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_checkout_idempotency,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("checkout_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_checkout_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_checkout_module_ctx = {
    ngx_http_checkout_preconfiguration,    /* preconfiguration */
    ngx_http_checkout_postconfiguration,   /* postconfiguration */

    ngx_http_checkout_create_main_conf,    /* create main configuration */
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
    ngx_http_checkout_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_checkout_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define ngx_http_checkout_event_outcome(name, outcome, type)                  \
    ngx_string(outcome),
#define ngx_http_checkout_event_default(name, outcome, type)                  \
    ngx_string(type),

/* indexed by ngx_http_checkout_event_e */

static ngx_str_t  ngx_http_checkout_event_outcomes[] = {
    CHECKOUT_EVENTS(ngx_http_checkout_event_outcome)
};


static ngx_str_t  ngx_http_checkout_event_defaults[] = {
    CHECKOUT_EVENTS(ngx_http_checkout_event_default)
};


static void *
ngx_http_checkout_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_checkout_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_checkout_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&cmcf->servers, cf->pool, 2,
                       sizeof(ngx_http_checkout_redis_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return cmcf;
}


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
     *     conf->stream = { 0, NULL };
     *     conf->event_types[] = { 0, NULL };
     */

    conf->redis = NGX_CONF_UNSET_PTR;
    conf->redis_timeout = NGX_CONF_UNSET_MSEC;
    conf->maxlen = NGX_CONF_UNSET_UINT;
    conf->state_ttl = NGX_CONF_UNSET;
    conf->status_index = NGX_CONF_UNSET;
    conf->idempotency = NGX_CONF_UNSET_UINT;
    conf->idempotency_ttl = NGX_CONF_UNSET_MSEC;

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

    ngx_uint_t                      i;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_checkout_main_conf_t  *cmcf;

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

    ngx_conf_merge_ptr_value(conf->redis, prev->redis, NULL);
    ngx_conf_merge_msec_value(conf->redis_timeout, prev->redis_timeout, 100);
    ngx_conf_merge_str_value(conf->stream, prev->stream,
                             CHECKOUT_STREAM_DEFAULT);
    ngx_conf_merge_uint_value(conf->maxlen, prev->maxlen, 0);
    ngx_conf_merge_sec_value(conf->state_ttl, prev->state_ttl, 7 * 86400);
    ngx_conf_merge_uint_value(conf->idempotency, prev->idempotency,
                              NGX_HTTP_CHECKOUT_IDEMPOTENCY_OFF);
    ngx_conf_merge_msec_value(conf->idempotency_ttl, prev->idempotency_ttl,
                              86400 * 1000);

    for (i = 0; i < NGX_HTTP_CHECKOUT_NEVENTS; i++) {
        if (conf->event_types[i].data == NULL) {
            conf->event_types[i] = prev->event_types[i].data
                                   ? prev->event_types[i]
                                   : ngx_http_checkout_event_defaults[i];
        }
    }

    if (conf->status_index != NGX_CONF_UNSET && conf->redis == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"checkout_status\" needs \"checkout_redis\" in %s:%ui",
                      conf->file, conf->line);
        return NGX_CONF_ERROR;
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

    if (conf->idempotency != NGX_HTTP_CHECKOUT_IDEMPOTENCY_OFF
        && conf->redis == NULL)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"checkout_idempotency\" needs \"checkout_redis\" "
                      "in %s:%ui", conf->file, conf->line);
        return NGX_CONF_ERROR;
    }

    /* an event that Redis cannot take must have somewhere to go */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_checkout_module);

    if (conf->redis && cmcf->spool.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"checkout\" with \"checkout_redis\" needs "
                      "\"checkout_spool\" in %s:%ui", conf->file, conf->line);
        return NGX_CONF_ERROR;
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
    ngx_http_checkout_main_conf_t  *cmcf;

    /* a relative spool directory is relative to nginx's prefix */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_checkout_module);

    if (cmcf->spool.len
        && ngx_conf_full_name(cf->cycle, &cmcf->spool, 0) != NGX_OK)
    {
        return NGX_ERROR;
    }

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
    ngx_str_t                      *value;
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
            if (ngx_http_checkout_conf_time(cf, &value[i], 8, &step->timeout)
                != NGX_OK)
            {
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


/* "name=TIME", a positive time; skip is the length of "name=" */

static ngx_int_t
ngx_http_checkout_conf_time(ngx_conf_t *cf, ngx_str_t *value, size_t skip,
    ngx_msec_t *msec)
{
    ngx_str_t  s;

    s.data = value->data + skip;
    s.len = value->len - skip;

    *msec = ngx_parse_time(&s, 0);

    if (*msec == (ngx_msec_t) NGX_ERROR || *msec == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time in \"%V\"", value);
        return NGX_ERROR;
    }

    return NGX_OK;
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

    ngx_str_t  *value;

    /* shared by the directives that take a timeout: name the one at hand */

    if (*timeout == 0) {
        value = cf->args->elts;

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must be more than 0", &value[0]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * checkout_redis 127.0.0.1:6379 | unix:/path [db=N] [password=SECRET];
 * A host name is resolved here, once: hiredis would resolve it with a
 * blocking call in the worker.
 */

static char *
ngx_http_checkout_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_checkout_loc_conf_t *cklcf = conf;

    u_char                           *p;
    ngx_url_t                         u;
    ngx_str_t                        *value;
    ngx_int_t                         db;
    ngx_uint_t                        i;
    ngx_http_checkout_main_conf_t    *cmcf;
    ngx_http_checkout_redis_conf_t   *rcf, **server;

    if (cklcf->redis != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_checkout_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    rcf->name = value[1];

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            rcf->db_text.data = value[i].data + 3;
            rcf->db_text.len = value[i].len - 3;

            db = ngx_atoi(rcf->db_text.data, rcf->db_text.len);
            if (db == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid Redis database \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            rcf->db = db;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0
            && value[i].len > 9)
        {
            rcf->password.data = value[i].data + 9;
            rcf->password.len = value[i].len - 9;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" of \"checkout_redis\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (value[1].len > 5 && ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        rcf->unix_path.len = value[1].len - 5;
        rcf->unix_path.data = ngx_pnalloc(cf->pool, rcf->unix_path.len + 1);
        if (rcf->unix_path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(rcf->unix_path.data, value[1].data + 5,
                    rcf->unix_path.len + 1);

    } else {
        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = value[1];
        u.default_port = 6379;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid Redis address \"%V\": %s",
                               &value[1], u.err ? u.err : "no address");
            return NGX_CONF_ERROR;
        }

        p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        rcf->host.data = p;
        rcf->host.len = ngx_sock_ntop(u.addrs[0].sockaddr,
                                      u.addrs[0].socklen, p,
                                      NGX_SOCKADDR_STRLEN, 0);
        p[rcf->host.len] = '\0';
        rcf->port = u.port;
    }

    /* one connection per worker for each distinct server */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_checkout_module);
    server = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        if (server[i]->name.len == rcf->name.len
            && ngx_strncmp(server[i]->name.data, rcf->name.data,
                           rcf->name.len) == 0
            && server[i]->db == rcf->db
            && server[i]->password.len == rcf->password.len
            && ngx_strncmp(server[i]->password.data, rcf->password.data,
                           rcf->password.len) == 0)
        {
            cklcf->redis = server[i];
            return NGX_CONF_OK;
        }
    }

    server = ngx_array_push(&cmcf->servers);
    if (server == NULL) {
        return NGX_CONF_ERROR;
    }

    *server = rcf;
    cklcf->redis = rcf;

    return NGX_CONF_OK;
}


/* checkout_stream NAME [maxlen=N]; */

static char *
ngx_http_checkout_stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_checkout_loc_conf_t *cklcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (cklcf->stream.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    cklcf->stream = value[1];
    cklcf->maxlen = 0;

    if (cf->args->nelts == 2) {
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[2].data, "maxlen=", 7) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" of \"checkout_stream\"",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    n = ngx_atoi(value[2].data + 7, value[2].len - 7);
    if (n == NGX_ERROR || n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid stream length \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    /* trimming at append drops entries no consumer group has read yet */

    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "\"checkout_stream\" %V is capped at about %i "
                       "entries: entries that no consumer group has read "
                       "can be trimmed", &value[1], n);

    cklcf->maxlen = n;

    return NGX_CONF_OK;
}


/* checkout_event confirmed|pending_review|declined TYPE; */

static char *
ngx_http_checkout_event(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_checkout_loc_conf_t *cklcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;

    for (i = 0; i < NGX_HTTP_CHECKOUT_NEVENTS; i++) {
        if (value[1].len == ngx_http_checkout_event_outcomes[i].len
            && ngx_strncmp(value[1].data,
                           ngx_http_checkout_event_outcomes[i].data,
                           value[1].len)
               == 0)
        {
            break;
        }
    }

    if (i == NGX_HTTP_CHECKOUT_NEVENTS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid outcome \"%V\": events are published "
                           "for \"" CHECKOUT_OUTCOME_CONFIRMED "\", \""
                           CHECKOUT_OUTCOME_PENDING_REVIEW "\" and \""
                           CHECKOUT_OUTCOME_DECLINED "\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cklcf->event_types[i].data) {
        return "is duplicate";
    }

    cklcf->event_types[i] = value[2];

    return NGX_CONF_OK;
}


/* checkout_idempotency off|optional|required [ttl=TIME]; */

static char *
ngx_http_checkout_idempotency(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_checkout_loc_conf_t *cklcf = conf;

    ngx_str_t  *value;

    if (cklcf->idempotency != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        cklcf->idempotency = NGX_HTTP_CHECKOUT_IDEMPOTENCY_OFF;

    } else if (ngx_strcmp(value[1].data, "optional") == 0) {
        cklcf->idempotency = NGX_HTTP_CHECKOUT_IDEMPOTENCY_OPTIONAL;

    } else if (ngx_strcmp(value[1].data, "required") == 0) {
        cklcf->idempotency = NGX_HTTP_CHECKOUT_IDEMPOTENCY_REQUIRED;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": \"checkout_idempotency\" "
                           "is \"off\", \"optional\" or \"required\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 2) {
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[2].data, "ttl=", 4) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" of "
                           "\"checkout_idempotency\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_checkout_conf_time(cf, &value[2], 4, &cklcf->idempotency_ttl)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* checkout_status $variable; the variable holds the checkout's id */

static char *
ngx_http_checkout_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_checkout_loc_conf_t *cklcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (cklcf->status_index != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len < 2 || value[1].data[0] != '$') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid variable name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    value[1].data++;
    value[1].len--;

    cklcf->status_index = ngx_http_get_variable_index(cf, &value[1]);
    if (cklcf->status_index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    ngx_http_checkout_conf_position(cf, cklcf);

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_checkout_status_handler;

    return NGX_CONF_OK;
}


/* connections are made per worker: an fd made before fork is shared */

static ngx_int_t
ngx_http_checkout_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_checkout_main_conf_t    *cmcf;
    ngx_http_checkout_redis_conf_t  **server;

    /* the cache manager and loader serve no checkout */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_checkout_module);
    if (cmcf == NULL) {
        return NGX_OK;
    }

    server = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        if (ngx_http_checkout_redis_init(cycle, server[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_checkout_spool_init(cycle, cmcf);
}


static void
ngx_http_checkout_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_checkout_main_conf_t    *cmcf;
    ngx_http_checkout_redis_conf_t  **server;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_checkout_module);
    if (cmcf == NULL) {
        return;
    }

    server = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        ngx_http_checkout_redis_done(server[i]);
    }
}
