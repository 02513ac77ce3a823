
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <yajl/yajl_parse.h>

#include "ngx_http_checkout_module.h"


typedef struct {
    ngx_uint_t                        need;
    u_char                            low;
    u_char                            high;
} ngx_http_checkout_utf8_t;


typedef struct {
    ngx_pool_t                       *pool;
    ngx_http_checkout_json_t         *root;
    ngx_http_checkout_json_t         *container;
    ngx_str_t                         key;
    ngx_uint_t                        depth;
    ngx_uint_t                        max_depth;
    ngx_http_checkout_json_error_e    error;
} ngx_http_checkout_json_parser_t;


static void *ngx_http_checkout_json_malloc(void *ctx, size_t size);
static void *ngx_http_checkout_json_realloc(void *ctx, void *ptr,
    size_t size);
static void ngx_http_checkout_json_free(void *ctx, void *ptr);
static void ngx_http_checkout_json_funcs(yajl_alloc_funcs *funcs,
    ngx_pool_t *pool);
static ngx_int_t ngx_http_checkout_utf8_feed(ngx_http_checkout_utf8_t *u,
    u_char *p, u_char *last);
static ngx_http_checkout_json_t *ngx_http_checkout_json_add(
    ngx_http_checkout_json_parser_t *jp, ngx_http_checkout_json_type_e type);
static ngx_int_t ngx_http_checkout_json_copy(
    ngx_http_checkout_json_parser_t *jp, ngx_str_t *dst, const u_char *src,
    size_t len);
static int ngx_http_checkout_json_on_null(void *ctx);
static int ngx_http_checkout_json_on_boolean(void *ctx, int value);
static int ngx_http_checkout_json_on_number(void *ctx, const char *value,
    size_t len);
static int ngx_http_checkout_json_on_string(void *ctx, const u_char *value,
    size_t len);
static int ngx_http_checkout_json_on_start(void *ctx,
    ngx_http_checkout_json_type_e type);
static int ngx_http_checkout_json_on_start_map(void *ctx);
static int ngx_http_checkout_json_on_start_array(void *ctx);
static int ngx_http_checkout_json_on_key(void *ctx, const u_char *key,
    size_t len);
static int ngx_http_checkout_json_on_end(void *ctx);


static yajl_callbacks  ngx_http_checkout_json_callbacks = {
    ngx_http_checkout_json_on_null,
    ngx_http_checkout_json_on_boolean,
    NULL,
    NULL,
    ngx_http_checkout_json_on_number,
    ngx_http_checkout_json_on_string,
    ngx_http_checkout_json_on_start_map,
    ngx_http_checkout_json_on_key,
    ngx_http_checkout_json_on_end,
    ngx_http_checkout_json_on_start_array,
    ngx_http_checkout_json_on_end
};


/*
 * yajl allocates through the request pool: whatever path a request takes,
 * parser and generator memory goes away with the pool.  Each block keeps
 * its size in front of it, which realloc needs to copy.
 */

static void *
ngx_http_checkout_json_malloc(void *ctx, size_t size)
{
    size_t  *p;

    p = ngx_palloc(ctx, sizeof(size_t) + size);
    if (p == NULL) {
        return NULL;
    }

    *p = size;

    return p + 1;
}


static void *
ngx_http_checkout_json_realloc(void *ctx, void *ptr, size_t size)
{
    size_t  *old;
    void    *p;

    p = ngx_http_checkout_json_malloc(ctx, size);
    if (p == NULL || ptr == NULL) {
        return p;
    }

    old = (size_t *) ptr - 1;
    ngx_memcpy(p, ptr, ngx_min(*old, size));
    ngx_pfree(ctx, old);

    return p;
}


static void
ngx_http_checkout_json_free(void *ctx, void *ptr)
{
    if (ptr != NULL) {
        (void) ngx_pfree(ctx, (size_t *) ptr - 1);
    }
}


static void
ngx_http_checkout_json_funcs(yajl_alloc_funcs *funcs, ngx_pool_t *pool)
{
    funcs->malloc = ngx_http_checkout_json_malloc;
    funcs->realloc = ngx_http_checkout_json_realloc;
    funcs->free = ngx_http_checkout_json_free;
    funcs->ctx = pool;
}


/* RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF */

static ngx_int_t
ngx_http_checkout_utf8_feed(ngx_http_checkout_utf8_t *u, u_char *p,
    u_char *last)
{
    u_char  c;

    for ( /* void */ ; p < last; p++) {
        c = *p;

        if (u->need) {
            if (c < u->low || c > u->high) {
                return NGX_ERROR;
            }

            u->need--;
            u->low = 0x80;
            u->high = 0xbf;
            continue;
        }

        if (c < 0x80) {
            continue;
        }

        u->low = 0x80;
        u->high = 0xbf;

        if (c >= 0xc2 && c <= 0xdf) {
            u->need = 1;

        } else if (c == 0xe0) {
            u->need = 2;
            u->low = 0xa0;

        } else if (c == 0xed) {
            u->need = 2;
            u->high = 0x9f;

        } else if (c >= 0xe1 && c <= 0xef) {
            u->need = 2;

        } else if (c == 0xf0) {
            u->need = 3;
            u->low = 0x90;

        } else if (c >= 0xf1 && c <= 0xf3) {
            u->need = 3;

        } else if (c == 0xf4) {
            u->need = 3;
            u->high = 0x8f;

        } else {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_http_checkout_json_error_e
ngx_http_checkout_json_parse(ngx_pool_t *pool, ngx_chain_t *in,
    ngx_uint_t max_depth, ngx_http_checkout_json_t **root)
{
    yajl_handle                       h;
    yajl_status                       status;
    ngx_buf_t                        *b;
    ngx_chain_t                      *cl;
    yajl_alloc_funcs                  funcs;
    ngx_http_checkout_utf8_t          utf8;
    ngx_http_checkout_json_parser_t   jp;

    ngx_memzero(&utf8, sizeof(ngx_http_checkout_utf8_t));

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_http_checkout_utf8_feed(&utf8, b->pos, b->last) != NGX_OK) {
            return NGX_HTTP_CHECKOUT_JSON_INVALID_UTF8;
        }
    }

    if (utf8.need) {
        return NGX_HTTP_CHECKOUT_JSON_INVALID_UTF8;
    }

    ngx_memzero(&jp, sizeof(ngx_http_checkout_json_parser_t));
    jp.pool = pool;
    jp.max_depth = max_depth;

    ngx_http_checkout_json_funcs(&funcs, pool);

    h = yajl_alloc(&ngx_http_checkout_json_callbacks, &funcs, &jp);
    if (h == NULL) {
        return NGX_HTTP_CHECKOUT_JSON_NOMEM;
    }

    status = yajl_status_ok;

    for (cl = in; cl && status == yajl_status_ok; cl = cl->next) {
        b = cl->buf;
        status = yajl_parse(h, b->pos, b->last - b->pos);
    }

    if (status == yajl_status_ok) {
        status = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (status != yajl_status_ok) {
        return jp.error ? jp.error : NGX_HTTP_CHECKOUT_JSON_MALFORMED;
    }

    *root = jp.root;

    return NGX_HTTP_CHECKOUT_JSON_OK;
}


static ngx_http_checkout_json_t *
ngx_http_checkout_json_add(ngx_http_checkout_json_parser_t *jp,
    ngx_http_checkout_json_type_e type)
{
    ngx_http_checkout_json_t  *v, *parent;

    v = ngx_pcalloc(jp->pool, sizeof(ngx_http_checkout_json_t));
    if (v == NULL) {
        jp->error = NGX_HTTP_CHECKOUT_JSON_NOMEM;
        return NULL;
    }

    v->type = type;
    parent = jp->container;

    if (parent == NULL) {
        jp->root = v;
        return v;
    }

    if (parent->type == NGX_HTTP_CHECKOUT_JSON_OBJECT) {
        v->key = jp->key;
    }

    v->parent = parent;

    if (parent->last) {
        parent->last->next = v;

    } else {
        parent->child = v;
    }

    parent->last = v;

    return v;
}


static ngx_int_t
ngx_http_checkout_json_copy(ngx_http_checkout_json_parser_t *jp,
    ngx_str_t *dst, const u_char *src, size_t len)
{
    dst->len = len;
    dst->data = ngx_pnalloc(jp->pool, len ? len : 1);

    if (dst->data == NULL) {
        jp->error = NGX_HTTP_CHECKOUT_JSON_NOMEM;
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, len);

    return NGX_OK;
}


static int
ngx_http_checkout_json_on_null(void *ctx)
{
    return ngx_http_checkout_json_add(ctx, NGX_HTTP_CHECKOUT_JSON_NULL)
           != NULL;
}


static int
ngx_http_checkout_json_on_boolean(void *ctx, int value)
{
    return ngx_http_checkout_json_add(ctx, value
                                           ? NGX_HTTP_CHECKOUT_JSON_TRUE
                                           : NGX_HTTP_CHECKOUT_JSON_FALSE)
           != NULL;
}


static int
ngx_http_checkout_json_on_number(void *ctx, const char *value, size_t len)
{
    ngx_http_checkout_json_t  *v;

    v = ngx_http_checkout_json_add(ctx, NGX_HTTP_CHECKOUT_JSON_NUMBER);
    if (v == NULL) {
        return 0;
    }

    return ngx_http_checkout_json_copy(ctx, &v->value, (u_char *) value, len)
           == NGX_OK;
}


static int
ngx_http_checkout_json_on_string(void *ctx, const u_char *value, size_t len)
{
    ngx_http_checkout_json_t  *v;

    v = ngx_http_checkout_json_add(ctx, NGX_HTTP_CHECKOUT_JSON_STRING);
    if (v == NULL) {
        return 0;
    }

    return ngx_http_checkout_json_copy(ctx, &v->value, value, len) == NGX_OK;
}


static int
ngx_http_checkout_json_on_start(void *ctx, ngx_http_checkout_json_type_e type)
{
    ngx_http_checkout_json_parser_t  *jp = ctx;

    ngx_http_checkout_json_t  *v;

    /* the limit also bounds the recursion of the generator below */

    if (++jp->depth > jp->max_depth) {
        jp->error = NGX_HTTP_CHECKOUT_JSON_TOO_DEEP;
        return 0;
    }

    v = ngx_http_checkout_json_add(jp, type);
    if (v == NULL) {
        return 0;
    }

    jp->container = v;

    return 1;
}


static int
ngx_http_checkout_json_on_start_map(void *ctx)
{
    return ngx_http_checkout_json_on_start(ctx, NGX_HTTP_CHECKOUT_JSON_OBJECT);
}


static int
ngx_http_checkout_json_on_start_array(void *ctx)
{
    return ngx_http_checkout_json_on_start(ctx, NGX_HTTP_CHECKOUT_JSON_ARRAY);
}


static int
ngx_http_checkout_json_on_key(void *ctx, const u_char *key, size_t len)
{
    ngx_http_checkout_json_parser_t  *jp = ctx;

    return ngx_http_checkout_json_copy(jp, &jp->key, key, len) == NGX_OK;
}


static int
ngx_http_checkout_json_on_end(void *ctx)
{
    ngx_http_checkout_json_parser_t  *jp = ctx;

    jp->depth--;
    jp->container = jp->container->parent;

    return 1;
}


ngx_http_checkout_json_t *
ngx_http_checkout_json_get(ngx_http_checkout_json_t *object, char *key)
{
    size_t                     len;
    ngx_http_checkout_json_t  *v;

    if (object == NULL || object->type != NGX_HTTP_CHECKOUT_JSON_OBJECT) {
        return NULL;
    }

    len = ngx_strlen(key);

    for (v = object->child; v; v = v->next) {
        if (v->key.len == len && ngx_strncmp(v->key.data, key, len) == 0) {
            return v;
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_checkout_json_writer_init(ngx_http_checkout_json_writer_t *w,
    ngx_pool_t *pool)
{
    yajl_alloc_funcs  funcs;

    ngx_http_checkout_json_funcs(&funcs, pool);

    w->failed = 0;
    w->gen = yajl_gen_alloc(&funcs);

    return w->gen ? NGX_OK : NGX_ERROR;
}


void
ngx_http_checkout_json_str(ngx_http_checkout_json_writer_t *w, ngx_str_t *s)
{
    if (yajl_gen_string(w->gen, s->data, s->len) != yajl_gen_status_ok) {
        w->failed = 1;
    }
}


void
ngx_http_checkout_json_cstr(ngx_http_checkout_json_writer_t *w, char *s)
{
    if (yajl_gen_string(w->gen, (u_char *) s, ngx_strlen(s))
        != yajl_gen_status_ok)
    {
        w->failed = 1;
    }
}


void
ngx_http_checkout_json_int(ngx_http_checkout_json_writer_t *w, ngx_int_t n)
{
    if (yajl_gen_integer(w->gen, n) != yajl_gen_status_ok) {
        w->failed = 1;
    }
}


void
ngx_http_checkout_json_literal(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_json_type_e type)
{
    yajl_gen_status  rc;

    switch (type) {

    case NGX_HTTP_CHECKOUT_JSON_TRUE:
        rc = yajl_gen_bool(w->gen, 1);
        break;

    case NGX_HTTP_CHECKOUT_JSON_FALSE:
        rc = yajl_gen_bool(w->gen, 0);
        break;

    case NGX_HTTP_CHECKOUT_JSON_OBJECT:
        rc = yajl_gen_map_open(w->gen);
        break;

    case NGX_HTTP_CHECKOUT_JSON_ARRAY:
        rc = yajl_gen_array_open(w->gen);
        break;

    default: /* NGX_HTTP_CHECKOUT_JSON_NULL */
        rc = yajl_gen_null(w->gen);
    }

    if (rc != yajl_gen_status_ok) {
        w->failed = 1;
    }
}


void
ngx_http_checkout_json_close(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_json_type_e type)
{
    yajl_gen_status  rc;

    rc = (type == NGX_HTTP_CHECKOUT_JSON_OBJECT) ? yajl_gen_map_close(w->gen)
                                                 : yajl_gen_array_close(w->gen);

    if (rc != yajl_gen_status_ok) {
        w->failed = 1;
    }
}


void
ngx_http_checkout_json_value(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_json_t *v)
{
    ngx_http_checkout_json_t  *m;

    switch (v->type) {

    case NGX_HTTP_CHECKOUT_JSON_STRING:
        ngx_http_checkout_json_str(w, &v->value);
        return;

    case NGX_HTTP_CHECKOUT_JSON_NUMBER:
        if (yajl_gen_number(w->gen, (char *) v->value.data, v->value.len)
            != yajl_gen_status_ok)
        {
            w->failed = 1;
        }
        return;

    case NGX_HTTP_CHECKOUT_JSON_OBJECT:
    case NGX_HTTP_CHECKOUT_JSON_ARRAY:
        ngx_http_checkout_json_literal(w, v->type);

        for (m = v->child; m; m = m->next) {
            if (v->type == NGX_HTTP_CHECKOUT_JSON_OBJECT) {
                ngx_http_checkout_json_str(w, &m->key);
            }

            ngx_http_checkout_json_value(w, m);
        }

        ngx_http_checkout_json_close(w, v->type);
        return;

    default:
        ngx_http_checkout_json_literal(w, v->type);
    }
}


ngx_int_t
ngx_http_checkout_json_result(ngx_http_checkout_json_writer_t *w,
    ngx_str_t *out)
{
    size_t           len;
    const u_char    *buf;

    if (w->failed
        || yajl_gen_get_buf(w->gen, &buf, &len) != yajl_gen_status_ok)
    {
        return NGX_ERROR;
    }

    /* the buffer stays valid: the generator lives as long as the pool */

    out->data = (u_char *) buf;
    out->len = len;

    return NGX_OK;
}
