
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"


#define ngx_http_checkout_outcome(name, text)  ngx_string(text),

static ngx_str_t  ngx_http_checkout_outcomes[] = {
    ngx_null_string,
    CHECKOUT_OUTCOMES(ngx_http_checkout_outcome)
    ngx_string(CHECKOUT_INVALID_REQUEST)
};


ngx_str_t *
ngx_http_checkout_outcome_name(ngx_http_checkout_outcome_e outcome)
{
    return &ngx_http_checkout_outcomes[outcome];
}


/* bad input: no step runs, the reply says what was wrong */

ngx_int_t
ngx_http_checkout_invalid(ngx_http_checkout_ctx_t *ctx, ngx_uint_t status,
    char *error, char *message)
{
    ctx->outcome = NGX_HTTP_CHECKOUT_INVALID_REQUEST;
    ctx->status = status;
    ctx->error = error;
    ctx->message = message;

    return NGX_DECLINED;
}


/*
 * A result came in (a step, Redis): the checkout's own logic runs from
 * nginx's posted requests, not inside a subrequest's finalization; a
 * Redis callback runs them right after, outside hiredis's own state.
 */

void
ngx_http_checkout_wake(ngx_http_request_t *r)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout wake");

    if (ngx_http_post_request(r, NULL) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


/* microseconds of the monotonic clock: step timings and deadlines */

uint64_t
ngx_http_checkout_now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
