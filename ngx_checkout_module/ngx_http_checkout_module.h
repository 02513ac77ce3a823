
/*
 * Copyright (C) ngx_checkout developers
 */


#ifndef _NGX_HTTP_CHECKOUT_MODULE_H_INCLUDED_
#define _NGX_HTTP_CHECKOUT_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <yajl/yajl_gen.h>

#include <checkout_contract.h>


#define NGX_HTTP_CHECKOUT_UNPROCESSABLE    422

#define NGX_HTTP_CHECKOUT_STEP_NAME_LEN    32
#define NGX_HTTP_CHECKOUT_STEP_MAX_DEPTH   64


typedef enum {
    NGX_HTTP_CHECKOUT_JSON_NULL = 0,
    NGX_HTTP_CHECKOUT_JSON_FALSE,
    NGX_HTTP_CHECKOUT_JSON_TRUE,
    NGX_HTTP_CHECKOUT_JSON_NUMBER,
    NGX_HTTP_CHECKOUT_JSON_STRING,
    NGX_HTTP_CHECKOUT_JSON_OBJECT,
    NGX_HTTP_CHECKOUT_JSON_ARRAY
} ngx_http_checkout_json_type_e;


typedef enum {
    NGX_HTTP_CHECKOUT_JSON_OK = 0,
    NGX_HTTP_CHECKOUT_JSON_INVALID_UTF8,
    NGX_HTTP_CHECKOUT_JSON_MALFORMED,
    NGX_HTTP_CHECKOUT_JSON_TOO_DEEP,
    NGX_HTTP_CHECKOUT_JSON_NOMEM
} ngx_http_checkout_json_error_e;


typedef struct ngx_http_checkout_json_s  ngx_http_checkout_json_t;

/*
 * A parsed JSON value in the request pool.  Numbers keep their text, so
 * a client's amount is passed on digit for digit.
 */
struct ngx_http_checkout_json_s {
    ngx_http_checkout_json_type_e    type;
    ngx_str_t                        key;
    ngx_str_t                        value;
    ngx_http_checkout_json_t        *child;
    ngx_http_checkout_json_t        *last;
    ngx_http_checkout_json_t        *next;
    ngx_http_checkout_json_t        *parent;
};


/* a yajl generator that remembers whether any write failed */
typedef struct {
    yajl_gen                         gen;
    ngx_uint_t                       failed;
} ngx_http_checkout_json_writer_t;


#define ngx_http_checkout_outcome_enum(name, text)                            \
    NGX_HTTP_CHECKOUT_##name,

/* in the contract's order: ngx_http_checkout_outcome_name() relies on it */
typedef enum {
    NGX_HTTP_CHECKOUT_NONE = 0,
    CHECKOUT_OUTCOMES(ngx_http_checkout_outcome_enum)
    NGX_HTTP_CHECKOUT_INVALID_REQUEST
} ngx_http_checkout_outcome_e;


#define ngx_http_checkout_event_enum(name, outcome, type)                     \
    NGX_HTTP_CHECKOUT_EVENT_##name,

/* the outcomes that publish an event: an index of event_types[] */
typedef enum {
    CHECKOUT_EVENTS(ngx_http_checkout_event_enum)
    NGX_HTTP_CHECKOUT_NEVENTS
} ngx_http_checkout_event_e;


/* what one step's answer means for the checkout */
typedef enum {
    NGX_HTTP_CHECKOUT_STEP_PASSED = 0,
    NGX_HTTP_CHECKOUT_STEP_DECLINED,
    NGX_HTTP_CHECKOUT_STEP_ACTION,
    NGX_HTTP_CHECKOUT_STEP_TIMEOUT,
    NGX_HTTP_CHECKOUT_STEP_ERROR
} ngx_http_checkout_verdict_e;


typedef struct ngx_http_checkout_redis_s  ngx_http_checkout_redis_t;
typedef struct ngx_http_checkout_redis_cmd_s  ngx_http_checkout_redis_cmd_t;

/* a string of a Redis reply is the literal s */
#define ngx_http_checkout_redis_is(reply, s)                                  \
    ((reply)->len == sizeof(s) - 1                                            \
     && ngx_strncmp((reply)->str, s, sizeof(s) - 1) == 0)

/* reply is NULL when the command failed, timed out or the link was lost */
typedef void (*ngx_http_checkout_redis_handler_pt)(void *data,
    redisReply *reply);


/* a "checkout_redis" server; each worker process has its own connection */
typedef struct {
    ngx_str_t                        name;
    ngx_str_t                        host;
    in_port_t                        port;
    ngx_str_t                        unix_path;
    ngx_uint_t                       db;
    ngx_str_t                        db_text;
    ngx_str_t                        password;
    ngx_http_checkout_redis_t       *redis;
} ngx_http_checkout_redis_conf_t;


typedef struct {
    ngx_array_t                      servers;
    ngx_str_t                        spool;
} ngx_http_checkout_main_conf_t;


typedef struct {
    ngx_str_t                        name;
    ngx_str_t                        uri;
    ngx_str_t                        args;
    ngx_msec_t                       timeout;
    unsigned                         timeout_pending:1;
    unsigned                         error_pending:1;
} ngx_http_checkout_step_conf_t;


typedef struct {
    ngx_flag_t                       enable;
    ngx_array_t                     *steps;
    ngx_msec_t                       timeout;
    size_t                           max_body_size;
    ngx_uint_t                       max_depth;
    time_t                           retry_after;

    ngx_http_checkout_redis_conf_t  *redis;
    ngx_msec_t                       redis_timeout;
    ngx_str_t                        stream;
    ngx_uint_t                       maxlen;
    ngx_str_t                        event_types[NGX_HTTP_CHECKOUT_NEVENTS];
    time_t                           state_ttl;

    ngx_int_t                        status_index;

    ngx_uint_t                       idempotency;
    ngx_msec_t                       idempotency_ttl;

    /* where "checkout" (or a step) was written, for merge-time errors */
    u_char                          *file;
    ngx_uint_t                       line;
} ngx_http_checkout_loc_conf_t;


#define NGX_HTTP_CHECKOUT_IDEMPOTENCY_OFF       0
#define NGX_HTTP_CHECKOUT_IDEMPOTENCY_OPTIONAL  1
#define NGX_HTTP_CHECKOUT_IDEMPOTENCY_REQUIRED  2


typedef enum {
    NGX_HTTP_CHECKOUT_PHASE_GATE = 0,
    NGX_HTTP_CHECKOUT_PHASE_STEPS,
    NGX_HTTP_CHECKOUT_PHASE_PUBLISH,
    NGX_HTTP_CHECKOUT_PHASE_REPLIED
} ngx_http_checkout_phase_e;


/* what Redis said of an idempotency key */
typedef enum {
    NGX_HTTP_CHECKOUT_GATE_NONE = 0,
    NGX_HTTP_CHECKOUT_GATE_NEW,
    NGX_HTTP_CHECKOUT_GATE_REUSED,
    NGX_HTTP_CHECKOUT_GATE_RUNNING,
    NGX_HTTP_CHECKOUT_GATE_DONE,
    NGX_HTTP_CHECKOUT_GATE_UNAVAILABLE
} ngx_http_checkout_gate_e;


/* a reply as sent, and as stored for an idempotent replay */
typedef struct {
    ngx_str_t                        status;
    ngx_str_t                        body;
    ngx_str_t                        location;
    ngx_str_t                        retry_after;
} ngx_http_checkout_reply_t;


/* the publish script's command, as sent and as written to the spool */
#define NGX_HTTP_CHECKOUT_EVENT_ARGS       40

typedef struct {
    ngx_uint_t                       argc;
    ngx_str_t                        argv[NGX_HTTP_CHECKOUT_EVENT_ARGS];
} ngx_http_checkout_event_args_t;


typedef struct ngx_http_checkout_ctx_s  ngx_http_checkout_ctx_t;

typedef struct {
    ngx_http_checkout_step_conf_t   *conf;
    ngx_http_checkout_ctx_t         *ctx;
    ngx_http_request_t              *sr;

    /* the reply as captured, and as parsed: for a decline it may be NULL */
    ngx_buf_t                       *body;
    ngx_http_checkout_json_t        *reply;
    ngx_uint_t                       status;
    ngx_http_checkout_verdict_e      verdict;

    uint64_t                         start;
    uint64_t                         duration;
    ngx_msec_t                       budget;

    unsigned                         started:1;
    unsigned                         done:1;
    unsigned                         cut_off:1;
    unsigned                         budget_limited:1;
    unsigned                         unsent:1;
    unsigned                         too_large:1;
} ngx_http_checkout_step_t;


struct ngx_http_checkout_ctx_s {
    ngx_http_request_t              *request;
    ngx_http_checkout_loc_conf_t    *conf;

    ngx_http_checkout_phase_e        phase;

    ngx_str_t                        id;
    ngx_http_checkout_json_t        *cart;

    ngx_str_t                        idempotency_key;
    ngx_str_t                        idempotency_redis_key;
    ngx_str_t                        fingerprint;
    ngx_http_checkout_gate_e         gate;
    ngx_http_checkout_reply_t        stored;

    ngx_http_checkout_step_t        *steps;
    ngx_uint_t                       nsteps;
    ngx_uint_t                       current;

    uint64_t                         start;
    uint64_t                         deadline;
    ngx_event_t                      timer;

    ngx_http_checkout_outcome_e      outcome;
    ngx_http_checkout_step_t        *decisive;
    ngx_uint_t                       status;
    char                            *error;
    char                            *message;
    ngx_http_checkout_reply_t        reply;

    ngx_http_checkout_event_args_t  *event;

    /* the one Redis command the request waits for, if any */
    ngx_http_checkout_redis_cmd_t   *command;

    unsigned                         budget_exhausted:1;
};


ngx_int_t ngx_http_checkout_handler(ngx_http_request_t *r);

void ngx_http_checkout_step_init(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
ngx_int_t ngx_http_checkout_step_start(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx, ngx_http_checkout_step_t *step);
void ngx_http_checkout_step_results(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_ctx_t *ctx, ngx_uint_t n);
ngx_int_t ngx_http_checkout_step_filter_init(ngx_conf_t *cf);

ngx_int_t ngx_http_checkout_build_reply(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
ngx_int_t ngx_http_checkout_send_reply(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
ngx_int_t ngx_http_checkout_send_stored(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
ngx_int_t ngx_http_checkout_send_invalid(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
ngx_int_t ngx_http_checkout_send_json(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *body);
ngx_int_t ngx_http_checkout_add_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_checkout_timings(ngx_pool_t *pool,
    ngx_http_checkout_ctx_t *ctx, ngx_uint_t server_timing, ngx_str_t *out);

ngx_http_checkout_json_error_e ngx_http_checkout_json_parse(ngx_pool_t *pool,
    ngx_chain_t *in, ngx_uint_t max_depth, ngx_http_checkout_json_t **root);
ngx_http_checkout_json_t *ngx_http_checkout_json_get(
    ngx_http_checkout_json_t *object, char *key);
ngx_int_t ngx_http_checkout_json_writer_init(
    ngx_http_checkout_json_writer_t *w, ngx_pool_t *pool);
void ngx_http_checkout_json_str(ngx_http_checkout_json_writer_t *w,
    ngx_str_t *s);
void ngx_http_checkout_json_cstr(ngx_http_checkout_json_writer_t *w,
    char *s);
void ngx_http_checkout_json_int(ngx_http_checkout_json_writer_t *w,
    ngx_int_t n);
void ngx_http_checkout_json_literal(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_json_type_e type);
void ngx_http_checkout_json_close(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_json_type_e type);
void ngx_http_checkout_json_value(ngx_http_checkout_json_writer_t *w,
    ngx_http_checkout_json_t *v);
ngx_int_t ngx_http_checkout_json_result(ngx_http_checkout_json_writer_t *w,
    ngx_str_t *out);

ngx_int_t ngx_http_checkout_event_publish(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
ngx_int_t ngx_http_checkout_event_send(
    ngx_http_checkout_redis_conf_t *redis, ngx_msec_t timeout,
    ngx_uint_t cancelable, ngx_http_checkout_event_args_t *args,
    ngx_http_checkout_redis_handler_pt handler, void *data,
    ngx_http_checkout_redis_cmd_t **cmd);

ngx_int_t ngx_http_checkout_spool_init(ngx_cycle_t *cycle,
    ngx_http_checkout_main_conf_t *cmcf);
ngx_int_t ngx_http_checkout_spool_write(ngx_http_request_t *r,
    ngx_http_checkout_redis_conf_t *redis,
    ngx_http_checkout_event_args_t *args);

ngx_int_t ngx_http_checkout_idempotency_key(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);
ngx_int_t ngx_http_checkout_idempotency_gate(ngx_http_request_t *r,
    ngx_http_checkout_ctx_t *ctx);

ngx_int_t ngx_http_checkout_status_handler(ngx_http_request_t *r);

ngx_int_t ngx_http_checkout_redis_init(ngx_cycle_t *cycle,
    ngx_http_checkout_redis_conf_t *conf);
void ngx_http_checkout_redis_done(ngx_http_checkout_redis_conf_t *conf);
ngx_uint_t ngx_http_checkout_redis_ready(
    ngx_http_checkout_redis_conf_t *conf);
ngx_http_checkout_redis_cmd_t *ngx_http_checkout_redis_command(
    ngx_http_checkout_redis_t *redis, ngx_msec_t timeout,
    ngx_uint_t cancelable, ngx_http_checkout_redis_handler_pt handler,
    void *data, int argc, const char **argv, const size_t *argvlen);
void ngx_http_checkout_redis_cancel(ngx_http_checkout_redis_cmd_t *cmd);

ngx_int_t ngx_http_checkout_variables_add(ngx_conf_t *cf);

ngx_str_t *ngx_http_checkout_outcome_name(
    ngx_http_checkout_outcome_e outcome);
ngx_int_t ngx_http_checkout_invalid(ngx_http_checkout_ctx_t *ctx,
    ngx_uint_t status, char *error, char *message);
void ngx_http_checkout_wake(ngx_http_request_t *r);
uint64_t ngx_http_checkout_now(void);


extern ngx_module_t  ngx_http_checkout_module;


#endif /* _NGX_HTTP_CHECKOUT_MODULE_H_INCLUDED_ */
