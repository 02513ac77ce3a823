/* checkout-worker configuration: the parsed form of the config file.
 *
 * The file is redis.conf style: one directive per line, '#' comments, quoted
 * arguments. Global directives come first; "group NAME" starts a section
 * whose directives belong to that group until the next "group".
 * docs/worker.md has the reference of every directive.
 *
 * Ownership: configLoad() and configLoadString() return a workerConfig the
 * caller owns and releases with configFree(); every string and array in it
 * belongs to it. Nothing in it is shared with the parser's input. */

#ifndef CHECKOUT_WORKER_CONFIG_H
#define CHECKOUT_WORKER_CONFIG_H

#include <stddef.h>

#define CONFIG_OK 0
#define CONFIG_ERR -1

/* How a group delivers its events. */
typedef enum handlerType {
    HANDLER_HTTP = 1        /* POST to the group's url */
} handlerType;

/* A network address: a TCP host and port, or a unix socket path. */
typedef struct configAddr {
    char *host;             /* name or IP (IPv6 without brackets); NULL: unix */
    int port;               /* 1..65535; 0 for a unix socket */
    char *path;             /* unix socket path; NULL: TCP */
} configAddr;

/* One consumer group: one follow-up task (receipt, fulfillment, ...). The
 * Redis consumer group, the task's field in the checkout state hash and the
 * group's name in admin commands are all 'name'. */
typedef struct groupConfig {
    char *name;
    int line;               /* line of its "group" directive, for messages */
    char *stream;           /* the stream it reads */
    handlerType handler;
    char *url;              /* HANDLER_HTTP: http:// or https:// URL */
    long long timeout_ms;   /* per delivery */
    int concurrency;        /* deliveries in flight at once */
    int max_attempts;       /* deliveries in all, the first one included */
    long long backoff_base_ms;
    long long backoff_cap_ms;
    long long min_idle_ms;  /* pending entries idle longer are reclaimed */
    int *schema_versions;   /* accepted schema-version majors, no repeats */
    int nschema_versions;   /* at least 1 */
    char **types;           /* event types handled; NULL: every type */
    int ntypes;
} groupConfig;

/* The whole file. */
typedef struct workerConfig {
    configAddr redis;
    char *redis_password;   /* NULL: no AUTH */
    int redis_db;
    char *consumer_name;    /* NULL: hostname:pid, chosen at run time */
    configAddr admin;       /* TCP only */
    char *admin_password;   /* NULL: no AUTH on the admin port */
    char *dead_letter_stream;
    char *log;              /* "stderr" or a file path */
    long long shutdown_timeout_ms;
    long long done_ttl_ms;  /* completion records are kept this long */
    long long retention_ms; /* processed entries younger than this stay */
    groupConfig *groups;    /* in file order */
    int ngroups;            /* at least 1 */
} workerConfig;

int configLoad(const char *path, workerConfig **cfg, char *err,
               size_t errlen);
int configLoadString(const char *text, const char *name, workerConfig **cfg,
                     char *err, size_t errlen);
void configFree(workerConfig *cfg);

#endif
