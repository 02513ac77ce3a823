
/*
 * Copyright (C) ngx_checkout developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_checkout_module.h"
#include "ngx_http_checkout_publish_lua.h"


#define NGX_HTTP_CHECKOUT_SPOOL_INTERVAL  1000
#define NGX_HTTP_CHECKOUT_SPOOL_TIMEOUT   1000
#define NGX_HTTP_CHECKOUT_SPOOL_BATCH     100
#define NGX_HTTP_CHECKOUT_SPOOL_READ      65536


/* this worker's spool of one Redis server */
typedef struct {
    ngx_http_checkout_redis_conf_t   *redis;
    ngx_str_t                         prefix;

    /* the file events are appended to, and its length on disk */
    ngx_fd_t                          fd;
    off_t                             size;
    ngx_uint_t                        sequence;

    /*
     * The file being replayed, a batch of lines at a time: where the
     * batch starts and ends, its commands still without a reply, those
     * that Redis could not take now (the batch is sent again), and the
     * file's lines that no replay can take (it is then kept aside).
     */
    u_char                           *replaying;
    ngx_fd_t                          replay_fd;
    off_t                             offset;
    off_t                             batch_end;
    ngx_uint_t                        outstanding;
    ngx_uint_t                        failed;
    ngx_uint_t                        rejected;
    ngx_uint_t                        rejected_before;
} ngx_http_checkout_spool_t;


typedef struct {
    ngx_str_t                         dir;
    ngx_array_t                       spools;
    ngx_event_t                       timer;
    ngx_log_t                        *log;
} ngx_http_checkout_spools_t;


static ngx_http_checkout_spool_t *ngx_http_checkout_spool_find(
    ngx_http_checkout_redis_conf_t *redis);
static u_char *ngx_http_checkout_spool_name(u_char *buf,
    ngx_http_checkout_spool_t *spool, ngx_int_t sequence);
static void ngx_http_checkout_spool_timer(ngx_event_t *ev);
static void ngx_http_checkout_spool_replay(ngx_http_checkout_spool_t *spool);
static ngx_int_t ngx_http_checkout_spool_take(
    ngx_http_checkout_spool_t *spool);
static ngx_int_t ngx_http_checkout_spool_claim(
    ngx_http_checkout_spool_t *spool, u_char *from);
static void ngx_http_checkout_spool_send(ngx_http_checkout_spool_t *spool,
    ngx_pool_t *pool, u_char *start, u_char *end);
static void ngx_http_checkout_spool_replayed(void *data, redisReply *reply);
static void ngx_http_checkout_spool_batch_done(
    ngx_http_checkout_spool_t *spool);
static void ngx_http_checkout_spool_finish(ngx_http_checkout_spool_t *spool);


/* errors after which Redis may take the same command later */
static ngx_str_t  ngx_http_checkout_spool_transient[] = {
    ngx_string("OOM"),
    ngx_string("MISCONF"),
    ngx_string("READONLY"),
    ngx_string("NOREPLICAS"),
    ngx_string("BUSY"),
    ngx_string("MASTERDOWN"),
    ngx_string("LOADING"),
    ngx_string("TRYAGAIN"),
    ngx_string("CLUSTERDOWN"),
    ngx_null_string
};


static ngx_http_checkout_spools_t  *ngx_http_checkout_spools;


/*
 * The spool: when Redis cannot take an event, it is appended to this
 * worker's file and fsync'd before the client is answered, one JSON array
 * of the command's arguments a line.  A timer replays the files into Redis
 * once it answers; the script's guard makes a replay of an event that did
 * reach Redis a no-op.  Files of workers that are gone are taken over.
 */

ngx_int_t
ngx_http_checkout_spool_init(ngx_cycle_t *cycle,
    ngx_http_checkout_main_conf_t *cmcf)
{
    u_char                           *p;
    ngx_uint_t                        i;
    ngx_http_checkout_spool_t        *spool;
    ngx_http_checkout_spools_t       *spools;
    ngx_http_checkout_redis_conf_t  **server;

    if (cmcf->spool.len == 0 || cmcf->servers.nelts == 0) {
        return NGX_OK;
    }

    /* said at once, not at the first event that would be lost */

    if (access((char *) cmcf->spool.data, W_OK|X_OK) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "checkout spool directory \"%V\" is not writable "
                      "by this worker: events Redis cannot take will be "
                      "lost", &cmcf->spool);
    }

    spools = ngx_pcalloc(cycle->pool, sizeof(ngx_http_checkout_spools_t));
    if (spools == NULL) {
        return NGX_ERROR;
    }

    spools->dir = cmcf->spool;
    spools->log = cycle->log;

    if (ngx_array_init(&spools->spools, cycle->pool, cmcf->servers.nelts,
                       sizeof(ngx_http_checkout_spool_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    server = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        spool = ngx_array_push(&spools->spools);
        if (spool == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(spool, sizeof(ngx_http_checkout_spool_t));

        spool->redis = server[i];
        spool->fd = NGX_INVALID_FILE;
        spool->replay_fd = NGX_INVALID_FILE;

        /* "redis-<n>-": one prefix per server, in the order configured */

        spool->prefix.data = ngx_pnalloc(cycle->pool, NGX_INT_T_LEN + 8);
        if (spool->prefix.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(spool->prefix.data, "redis-%ui-", i);
        spool->prefix.len = p - spool->prefix.data;

        spool->replaying = ngx_pnalloc(cycle->pool, NGX_MAX_PATH);
        if (spool->replaying == NULL) {
            return NGX_ERROR;
        }
    }

    spools->timer.handler = ngx_http_checkout_spool_timer;
    spools->timer.data = spools;
    spools->timer.log = cycle->log;
    spools->timer.cancelable = 1;

    ngx_http_checkout_spools = spools;

    ngx_add_timer(&spools->timer, NGX_HTTP_CHECKOUT_SPOOL_INTERVAL);

    return NGX_OK;
}


static ngx_http_checkout_spool_t *
ngx_http_checkout_spool_find(ngx_http_checkout_redis_conf_t *redis)
{
    ngx_uint_t                  i;
    ngx_http_checkout_spool_t  *spool;

    if (ngx_http_checkout_spools == NULL) {
        return NULL;
    }

    spool = ngx_http_checkout_spools->spools.elts;

    for (i = 0; i < ngx_http_checkout_spools->spools.nelts; i++) {
        if (spool[i].redis == redis) {
            return &spool[i];
        }
    }

    return NULL;
}


/*
 * The one blocking call in the request path, and only when Redis has
 * failed: the event must be on disk before the client is told anything.
 * A line written in part (a full disk) is cut off again, so that the
 * next event does not join it.
 */

ngx_int_t
ngx_http_checkout_spool_write(ngx_http_request_t *r,
    ngx_http_checkout_redis_conf_t *redis,
    ngx_http_checkout_event_args_t *args)
{
    u_char                           *p, name[NGX_MAX_PATH];
    ngx_str_t                         line;
    ngx_uint_t                        i;
    ngx_http_checkout_spool_t        *spool;
    ngx_http_checkout_json_writer_t   w;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "checkout spool write: %V, %ui arguments",
                   &args->argv[NGX_HTTP_CHECKOUT_PUBLISH_ID], args->argc);

    spool = ngx_http_checkout_spool_find(redis);

    if (spool == NULL
        || ngx_http_checkout_json_writer_init(&w, r->pool) != NGX_OK)
    {
        goto lost;
    }

    ngx_http_checkout_json_literal(&w, NGX_HTTP_CHECKOUT_JSON_ARRAY);

    for (i = 0; i < args->argc; i++) {
        ngx_http_checkout_json_str(&w, &args->argv[i]);
    }

    ngx_http_checkout_json_close(&w, NGX_HTTP_CHECKOUT_JSON_ARRAY);

    if (ngx_http_checkout_json_result(&w, &line) != NGX_OK) {
        goto lost;
    }

    p = ngx_pnalloc(r->pool, line.len + 1);
    if (p == NULL) {
        goto lost;
    }

    ngx_memcpy(p, line.data, line.len);
    p[line.len++] = '\n';
    line.data = p;

    if (spool->fd == NGX_INVALID_FILE) {
        if (ngx_http_checkout_spool_name(name, spool, -1) == NULL) {
            goto lost;
        }

        spool->fd = ngx_open_file(name, NGX_FILE_APPEND,
                                  NGX_FILE_CREATE_OR_OPEN,
                                  NGX_FILE_DEFAULT_ACCESS);

        if (spool->fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                          ngx_open_file_n " \"%s\" failed", name);
            goto lost;
        }

        spool->size = lseek(spool->fd, 0, SEEK_END);
    }

    if (ngx_write_fd(spool->fd, line.data, line.len) != (ssize_t) line.len
        || fsync(spool->fd) == -1)
    {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      "checkout spool write failed");

        if (ftruncate(spool->fd, spool->size) == -1) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                          "checkout spool truncate failed");
        }

        goto lost;
    }

    spool->size += line.len;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "checkout %V: redis %V unavailable, event spooled",
                  &args->argv[NGX_HTTP_CHECKOUT_PUBLISH_ID], &redis->name);

    return NGX_DECLINED;

lost:

    ngx_log_error(NGX_LOG_CRIT, r->connection->log, 0,
                  "checkout %V: redis %V unavailable and the spool failed: "
                  "event lost", &args->argv[NGX_HTTP_CHECKOUT_PUBLISH_ID],
                  &redis->name);

    return NGX_DECLINED;
}


/* DIR/redis-N-PID.spool, or DIR/redis-N-PID-SEQ.replay for a sequence */

static u_char *
ngx_http_checkout_spool_name(u_char *buf, ngx_http_checkout_spool_t *spool,
    ngx_int_t sequence)
{
    u_char  *p, *last;

    last = buf + NGX_MAX_PATH - 1;

    if (sequence < 0) {
        p = ngx_slprintf(buf, last, "%V/%V%P.spool",
                         &ngx_http_checkout_spools->dir, &spool->prefix,
                         ngx_pid);

    } else {
        p = ngx_slprintf(buf, last, "%V/%V%P-%i.replay",
                         &ngx_http_checkout_spools->dir, &spool->prefix,
                         ngx_pid, sequence);
    }

    if (p == last) {
        return NULL;
    }

    *p = '\0';

    return buf;
}


static void
ngx_http_checkout_spool_timer(ngx_event_t *ev)
{
    ngx_http_checkout_spools_t *spools = ev->data;

    ngx_uint_t                  i;
    ngx_http_checkout_spool_t  *spool;

    spool = spools->spools.elts;

    for (i = 0; i < spools->spools.nelts; i++) {
        if (spool[i].outstanding == 0
            && ngx_http_checkout_redis_ready(spool[i].redis))
        {
            ngx_http_checkout_spool_replay(&spool[i]);
        }
    }

    if (!ev->timer_set && !ngx_exiting && !ngx_terminate) {
        ngx_add_timer(ev, NGX_HTTP_CHECKOUT_SPOOL_INTERVAL);
    }
}


/*
 * Sends the next batch of the file being replayed (taking a file first if
 * none is): at most NGX_HTTP_CHECKOUT_SPOOL_BATCH lines in order, so that
 * a large spool neither stalls the worker nor crowds out live requests on
 * the connection they share.
 */

static void
ngx_http_checkout_spool_replay(ngx_http_checkout_spool_t *spool)
{
    u_char           *buf, *p, *last, *eol;
    size_t            size;
    ssize_t           n;
    ngx_uint_t        lines, at_end;
    ngx_pool_t       *pool;
    ngx_file_info_t   fi;

    if (spool->replay_fd == NGX_INVALID_FILE) {
        if (ngx_http_checkout_spool_take(spool) != NGX_OK) {
            return;
        }

        spool->replay_fd = ngx_open_file(spool->replaying, NGX_FILE_RDONLY,
                                         NGX_FILE_OPEN, 0);

        if (spool->replay_fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log,
                          ngx_errno, ngx_open_file_n " \"%s\" failed",
                          spool->replaying);
            return;
        }

        spool->offset = 0;
        spool->rejected = 0;
    }

    if (ngx_fd_info(spool->replay_fd, &fi) == NGX_FILE_ERROR) {
        return;
    }

    if (spool->offset >= ngx_file_size(&fi)) {
        ngx_http_checkout_spool_finish(spool);
        return;
    }

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE,
                           ngx_http_checkout_spools->log);
    if (pool == NULL) {
        return;
    }

    /* a batch is read whole, growing the read until it holds one */

    size = NGX_HTTP_CHECKOUT_SPOOL_READ;

    for ( ;; ) {
        size = ngx_min(size, (size_t) (ngx_file_size(&fi) - spool->offset));

        buf = ngx_pnalloc(pool, size);
        if (buf == NULL) {
            goto done;
        }

        n = pread(spool->replay_fd, buf, size, spool->offset);
        if (n != (ssize_t) size) {
            ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log,
                          ngx_errno, "checkout spool \"%s\" read failed",
                          spool->replaying);
            goto done;
        }

        last = buf + n;
        at_end = (spool->offset + (off_t) size == ngx_file_size(&fi));

        for (lines = 0, p = buf;
             lines < NGX_HTTP_CHECKOUT_SPOOL_BATCH
             && (p = ngx_strlchr(p, last, '\n')) != NULL;
             p++, lines++)
        {
            /* void */
        }

        if (at_end || lines == NGX_HTTP_CHECKOUT_SPOOL_BATCH) {
            break;
        }

        size *= 2;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_http_checkout_spools->log, 0,
                   "checkout spool replay: \"%s\" at %O, %ui lines",
                   spool->replaying, spool->offset, lines);

    spool->failed = 0;
    spool->rejected_before = spool->rejected;

    for (lines = 0, p = buf; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, '\n');

        if (eol == NULL) {
            if (!at_end) {
                break;
            }

            /* a last line without its end is one no replay can take */
            eol = last;
        }

        if (eol > p) {
            ngx_http_checkout_spool_send(spool, pool, p, eol);
        }

        if (++lines == NGX_HTTP_CHECKOUT_SPOOL_BATCH) {
            p = eol + 1;
            break;
        }
    }

    spool->batch_end = spool->offset + (ngx_min(p, last) - buf);

    if (spool->outstanding == 0) {
        ngx_http_checkout_spool_batch_done(spool);
    }

done:

    ngx_destroy_pool(pool);
}


/*
 * Chooses the next file to replay, in spool->replaying, oldest first: one
 * an earlier replay of this worker left, then one of a worker that is
 * gone, then this worker's own spool, closed and renamed so that new
 * events start a new file.
 */

static ngx_int_t
ngx_http_checkout_spool_take(ngx_http_checkout_spool_t *spool)
{
    u_char      *name, *p, *end;
    size_t       len;
    ngx_int_t    pid, rc;
    ngx_dir_t    dir;
    ngx_str_t   *path;

    path = &ngx_http_checkout_spools->dir;
    rc = NGX_DECLINED;

    if (ngx_open_dir(path, &dir) == NGX_ERROR) {
        return NGX_DECLINED;
    }

    while (rc == NGX_DECLINED && ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        /* files kept aside for a human are not replayed again */

        if (len <= spool->prefix.len
            || ngx_strncmp(name, spool->prefix.data, spool->prefix.len) != 0
            || (len > sizeof(".rejected") - 1
                && ngx_strncmp(name + len - (sizeof(".rejected") - 1),
                               ".rejected", sizeof(".rejected") - 1) == 0))
        {
            continue;
        }

        p = name + spool->prefix.len;
        end = name + len;

        for (pid = 0; p < end && *p >= '0' && *p <= '9'; p++) {
            pid = pid * 10 + (*p - '0');
        }

        /* a live worker's file is its own business; ours comes last */

        if (pid != ngx_pid && (kill(pid, 0) == 0 || ngx_errno == NGX_EPERM))
        {
            continue;
        }

        if (pid == ngx_pid && (size_t) (end - p) == sizeof(".spool") - 1) {
            continue;
        }

        if (ngx_snprintf(spool->replaying, NGX_MAX_PATH - 1, "%V/%*s%Z",
                         path, len, name)
            == spool->replaying + NGX_MAX_PATH - 1)
        {
            continue;
        }

        rc = (pid == ngx_pid)
             ? NGX_OK
             : ngx_http_checkout_spool_claim(spool, spool->replaying);
    }

    (void) ngx_close_dir(&dir);

    if (rc != NGX_DECLINED || spool->fd == NGX_INVALID_FILE) {
        return rc;
    }

    (void) ngx_close_file(spool->fd);
    spool->fd = NGX_INVALID_FILE;

    if (ngx_http_checkout_spool_name(spool->replaying, spool, -1) == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_checkout_spool_claim(spool, spool->replaying);
}


/* renamed to this worker's next replay file, it is ours alone */

static ngx_int_t
ngx_http_checkout_spool_claim(ngx_http_checkout_spool_t *spool, u_char *from)
{
    u_char  to[NGX_MAX_PATH];

    if (ngx_http_checkout_spool_name(to, spool, spool->sequence++) == NULL) {
        return NGX_ERROR;
    }

    if (ngx_rename_file(from, to) == NGX_FILE_ERROR) {

        /* another worker took it first */

        if (ngx_errno == NGX_ENOENT) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log,
                      ngx_errno, ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      from, to);
        return NGX_ERROR;
    }

    ngx_cpystrn(spool->replaying, to, NGX_MAX_PATH);

    return NGX_OK;
}


/*
 * A line is only ever sent as what the module writes: the event script
 * with its keys and arguments, all strings.  Anything else is not sent.
 */

static void
ngx_http_checkout_spool_send(ngx_http_checkout_spool_t *spool,
    ngx_pool_t *pool, u_char *start, u_char *end)
{
    ngx_buf_t                        b;
    ngx_chain_t                      in;
    ngx_http_checkout_json_t        *root, *v;
    ngx_http_checkout_redis_cmd_t   *cmd;
    ngx_http_checkout_event_args_t   args;

    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.pos = start;
    b.last = end;
    in.buf = &b;
    in.next = NULL;

    args.argc = 0;

    if (ngx_http_checkout_json_parse(pool, &in, 2, &root)
        == NGX_HTTP_CHECKOUT_JSON_OK
        && root->type == NGX_HTTP_CHECKOUT_JSON_ARRAY)
    {
        for (v = root->child; v; v = v->next) {
            if (v->type != NGX_HTTP_CHECKOUT_JSON_STRING
                || args.argc == NGX_HTTP_CHECKOUT_EVENT_ARGS)
            {
                args.argc = 0;
                break;
            }

            args.argv[args.argc++] = v->value;
        }
    }

    if (args.argc < NGX_HTTP_CHECKOUT_PUBLISH_ARGC
        || args.argv[0].len != 4
        || ngx_strncmp(args.argv[0].data, "EVAL", 4) != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log, 0,
                      "checkout spool \"%s\": a line is not an event: "
                      "\"%*s\"", spool->replaying,
                      ngx_min((size_t) (end - start), 256), start);
        spool->rejected++;
        return;
    }

    if (ngx_http_checkout_event_send(spool->redis,
                                     NGX_HTTP_CHECKOUT_SPOOL_TIMEOUT, 1,
                                     &args, ngx_http_checkout_spool_replayed,
                                     spool, &cmd)
        != NGX_OK)
    {
        spool->failed++;
        return;
    }

    spool->outstanding++;
}


static void
ngx_http_checkout_spool_replayed(void *data, redisReply *reply)
{
    ngx_http_checkout_spool_t *spool = data;

    ngx_str_t   *transient;
    ngx_uint_t   level;

    spool->outstanding--;

    if (reply == NULL) {
        spool->failed++;

    } else if (reply->type == REDIS_REPLY_ERROR) {

        for (transient = ngx_http_checkout_spool_transient;
             transient->len;
             transient++)
        {
            if (reply->len >= transient->len
                && ngx_strncmp(reply->str, transient->data, transient->len)
                   == 0)
            {
                break;
            }
        }

        level = transient->len ? NGX_LOG_WARN : NGX_LOG_ALERT;

        ngx_log_error(level, ngx_http_checkout_spools->log, 0,
                      "checkout spool \"%s\": redis refused an event: %*s",
                      spool->replaying, (size_t) reply->len, reply->str);

        if (transient->len) {
            spool->failed++;

        } else {
            spool->rejected++;
        }
    }

    if (spool->outstanding == 0) {
        ngx_http_checkout_spool_batch_done(spool);
    }
}


/*
 * A batch that Redis could not take now is sent again a round later (the
 * script's guard makes a repeat harmless); otherwise the next batch goes
 * at once, until the file is done.
 */

static void
ngx_http_checkout_spool_batch_done(ngx_http_checkout_spool_t *spool)
{
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_http_checkout_spools->log, 0,
                   "checkout spool batch done: \"%s\", %ui failed, "
                   "%ui rejected", spool->replaying, spool->failed,
                   spool->rejected);

    if (spool->failed) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_checkout_spools->log, 0,
                      "checkout spool \"%s\": %ui events not replayed, "
                      "retrying", spool->replaying, spool->failed);

        /* the batch is sent again: its refused lines are counted again */

        spool->rejected = spool->rejected_before;
        return;
    }

    spool->offset = spool->batch_end;

    ngx_add_timer(&ngx_http_checkout_spools->timer, 1);
}


/*
 * A file whose every line is in Redis goes; one with lines no replay can
 * take is kept aside, as NAME.rejected, with the events it holds.
 */

static void
ngx_http_checkout_spool_finish(ngx_http_checkout_spool_t *spool)
{
    u_char  *p, aside[NGX_MAX_PATH];

    (void) ngx_close_file(spool->replay_fd);
    spool->replay_fd = NGX_INVALID_FILE;

    if (spool->rejected == 0) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_http_checkout_spools->log, 0,
                      "checkout spool \"%s\" replayed", spool->replaying);

        (void) ngx_delete_file(spool->replaying);
        return;
    }

    p = ngx_snprintf(aside, NGX_MAX_PATH - 1, "%s.rejected",
                     spool->replaying);
    *p = '\0';

    if (ngx_rename_file(spool->replaying, aside) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log,
                      ngx_errno, ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      spool->replaying, aside);
        return;
    }

    ngx_log_error(NGX_LOG_ALERT, ngx_http_checkout_spools->log, 0,
                  "checkout spool: %ui events cannot be replayed, kept in "
                  "\"%s\"", spool->rejected, aside);
}
