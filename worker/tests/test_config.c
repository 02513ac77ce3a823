/* Unit tests of config.c: every error message with its line, and valid
 * files with every field checked. */

#define _POSIX_C_SOURCE 200809L     /* mkstemp */

#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef WORKER_CONF
#error "WORKER_CONF: the path of conf/worker.conf (set by worker/Makefile)"
#endif

/* A line that makes a file valid when added to a group, and one group. */
#define REDIS "redis 127.0.0.1:6380\n"
#define GROUP "group g\nurl http://127.0.0.1:8094/g\n"

static char err[512];
static workerConfig sentinel;   /* what *cfg holds before a load */

/* Loads 'text' as "worker.conf". Returns the config, or NULL with the
 * message in 'err'. */
static workerConfig *load(const char *text) {
    workerConfig *cfg = &sentinel;
    int rc = configLoadString(text, "worker.conf", &cfg, err, sizeof(err));

    ck_assert_int_eq(rc, cfg ? CONFIG_OK : CONFIG_ERR);
    return cfg;
}

/* Writes 'len' bytes of 'data' into a new temporary file and returns its
 * path, which the caller unlinks and frees. */
static char *tempFile(const char *data, size_t len) {
    char *path = strdup("/tmp/test_config.XXXXXX");
    int fd;

    ck_assert_ptr_nonnull(path);
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

/* ---------------------------------------------------------------- errors */

static const struct {
    const char *text;
    const char *err;
} bad[] = {
    /* unknown directive */
    {REDIS "group receipt\n    url http://127.0.0.1:8094/receipt\n"
     "    concurency 4\n",
     "worker.conf:4: unknown directive \"concurency\""},
    {"# comment\n\nfoo bar\n", "worker.conf:3: unknown directive \"foo\""},
    {"\"red is\" x\n", "worker.conf:1: unknown directive \"red is\""},

    /* wrong number of arguments */
    {"redis 127.0.0.1:6380 6381\n",
     "worker.conf:1: wrong number of arguments for \"redis\" (expected 1, "
     "got 2)"},
    {REDIS "log\n",
     "worker.conf:2: wrong number of arguments for \"log\" (expected 1, "
     "got 0)"},
    {REDIS "group\n",
     "worker.conf:2: wrong number of arguments for \"group\" (expected 1, "
     "got 0)"},
    {REDIS GROUP "schema-versions\n",
     "worker.conf:4: wrong number of arguments for \"schema-versions\" "
     "(expected 1 or more, got 0)"},
    {REDIS GROUP "timeout 5 s\n",
     "worker.conf:4: wrong number of arguments for \"timeout\" (expected 1, "
     "got 2)"},

    /* bad duration */
    {REDIS GROUP "timeout 5\n",
     "worker.conf:4: bad duration \"5\" for \"timeout\" (expected a number "
     "and a unit: 250ms, 5s, 2m, 1h)"},
    {REDIS GROUP "backoff-base 1.5s\n",
     "worker.conf:4: bad duration \"1.5s\" for \"backoff-base\" (expected a "
     "number and a unit: 250ms, 5s, 2m, 1h)"},
    {REDIS GROUP "min-idle -1s\n",
     "worker.conf:4: bad duration \"-1s\" for \"min-idle\" (expected a "
     "number and a unit: 250ms, 5s, 2m, 1h)"},
    {"shutdown-timeout 10sec\n",
     "worker.conf:1: bad duration \"10sec\" for \"shutdown-timeout\" "
     "(expected a number and a unit: 250ms, 5s, 2m, 1h)"},
    {REDIS GROUP "backoff-cap s\n",
     "worker.conf:4: bad duration \"s\" for \"backoff-cap\" (expected a "
     "number and a unit: 250ms, 5s, 2m, 1h)"},

    /* duration out of range */
    {REDIS GROUP "timeout 0ms\n",
     "worker.conf:4: \"timeout\" must be between 1ms and 1d, got \"0ms\""},
    {REDIS GROUP "min-idle 25h\n",
     "worker.conf:4: \"min-idle\" must be between 1ms and 1d, got \"25h\""},
    {REDIS GROUP "backoff-cap 99999999999999999999h\n",
     "worker.conf:4: \"backoff-cap\" must be between 1ms and 1d, got "
     "\"99999999999999999999h\""},
    {REDIS GROUP "backoff-base 0s\n",
     "worker.conf:4: \"backoff-base\" must be between 1ms and 1d, got "
     "\"0s\""},
    {"shutdown-timeout 1441m\n",
     "worker.conf:1: \"shutdown-timeout\" must be between 0 and 1d, got "
     "\"1441m\""},

    /* bad number */
    {REDIS GROUP "concurrency four\n",
     "worker.conf:4: bad number \"four\" for \"concurrency\""},
    {REDIS GROUP "concurrency 4k\n",
     "worker.conf:4: bad number \"4k\" for \"concurrency\""},
    {REDIS GROUP "max-attempts +5\n",
     "worker.conf:4: bad number \"+5\" for \"max-attempts\""},
    {"redis-db \"\"\n", "worker.conf:1: bad number \"\" for \"redis-db\""},

    /* number out of range */
    {REDIS GROUP "concurrency 0\n",
     "worker.conf:4: \"concurrency\" must be between 1 and 1024, got \"0\""},
    {REDIS GROUP "concurrency 1025\n",
     "worker.conf:4: \"concurrency\" must be between 1 and 1024, got "
     "\"1025\""},
    {REDIS GROUP "concurrency 99999999999999999999\n",
     "worker.conf:4: \"concurrency\" must be between 1 and 1024, got "
     "\"99999999999999999999\""},
    {REDIS GROUP "max-attempts 0\n",
     "worker.conf:4: \"max-attempts\" must be between 1 and 1000, got \"0\""},
    {REDIS GROUP "max-attempts 1001\n",
     "worker.conf:4: \"max-attempts\" must be between 1 and 1000, got "
     "\"1001\""},
    {"redis-db -1\n",
     "worker.conf:1: \"redis-db\" must be between 0 and 2147483647, got "
     "\"-1\""},

    /* duplicates */
    {REDIS GROUP "group h\nurl http://h/\ngroup g\n",
     "worker.conf:6: duplicate group \"g\" (already defined at line 2)"},
    {REDIS GROUP "timeout 5s\n\ntimeout 6s\n",
     "worker.conf:6: duplicate \"timeout\" (already set at line 4)"},
    {REDIS GROUP "url http://h/other\n",
     "worker.conf:4: duplicate \"url\" (already set at line 3)"},
    {REDIS "log a\nlog b\n",
     "worker.conf:3: duplicate \"log\" (already set at line 2)"},

    /* scope */
    {REDIS "url http://127.0.0.1:8094/receipt\n",
     "worker.conf:2: \"url\" is only valid in a group section (after "
     "\"group NAME\")"},
    {"concurrency 4\n" REDIS GROUP,
     "worker.conf:1: \"concurrency\" is only valid in a group section "
     "(after \"group NAME\")"},
    {REDIS GROUP "admin 127.0.0.1:7000\n",
     "worker.conf:4: \"admin\" is a global directive: it must come before "
     "the first group"},

    /* missing url */
    {REDIS "group a\ntimeout 1s\ngroup b\nurl http://h/b\n",
     "worker.conf:2: group \"a\" has no \"url\" (handler http needs one)"},
    {REDIS GROUP "group last\n\n# the end\n",
     "worker.conf:4: group \"last\" has no \"url\" (handler http needs one)"},

    /* no group, no redis */
    {REDIS, "worker.conf: no group (add a section: \"group NAME\" and its "
     "directives)"},
    {"# nothing\n" REDIS "admin 127.0.0.1:6381\n",
     "worker.conf: no group (add a section: \"group NAME\" and its "
     "directives)"},
    {GROUP, "worker.conf: no \"redis\" directive (the Redis server to read "
     "from: host:port or unix:/path)"},
    {"", "worker.conf: no \"redis\" directive (the Redis server to read "
     "from: host:port or unix:/path)"},

    /* backoff-cap < backoff-base, on the later of the two lines */
    {REDIS GROUP "backoff-cap 100ms\nbackoff-base 1s\n",
     "worker.conf:5: backoff-cap 100ms is less than backoff-base 1s"},
    {REDIS GROUP "backoff-base 1s\nbackoff-cap 100ms\ngroup h\n",
     "worker.conf:5: backoff-cap 100ms is less than backoff-base 1s"},
    {REDIS GROUP "backoff-base 1m\n",
     "worker.conf:4: backoff-cap 30s (default) is less than backoff-base 1m"},
    {REDIS GROUP "backoff-cap 150ms\n",
     "worker.conf:4: backoff-cap 150ms is less than backoff-base 200ms "
     "(default)"},

    /* min-idle <= timeout */
    {REDIS GROUP "min-idle 5s\ntimeout 5s\n",
     "worker.conf:5: min-idle 5s must be greater than timeout 5s (or entries "
     "still being delivered are reclaimed)"},
    {REDIS GROUP "min-idle 5s\n",
     "worker.conf:4: min-idle 5s must be greater than timeout 5s (default) "
     "(or entries still being delivered are reclaimed)"},
    {REDIS GROUP "timeout 2m\n",
     "worker.conf:4: min-idle 1m (default) must be greater than timeout 2m "
     "(or entries still being delivered are reclaimed)"},

    /* min-idle <= backoff-cap */
    {REDIS GROUP "min-idle 10s\nbackoff-cap 10s\n",
     "worker.conf:5: min-idle 10s must be greater than backoff-cap 10s (or "
     "entries waiting for a retry are reclaimed)"},
    {REDIS GROUP "min-idle 20s\n",
     "worker.conf:4: min-idle 20s must be greater than backoff-cap 30s "
     "(default) (or entries waiting for a retry are reclaimed)"},

    /* group names the state hash or the keys cannot take */
    {REDIS "group status\nurl http://h/\n",
     "worker.conf:2: group name \"status\" is a field of the checkout state "
     "hash (the task's field would overwrite it)"},
    {REDIS "group eventId\nurl http://h/\n",
     "worker.conf:2: group name \"eventId\" is a field of the checkout "
     "state hash (the task's field would overwrite it)"},
    {REDIS "group "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
     "worker.conf:2: group name "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" "
     "is longer than 64 bytes"},

    /* types, done-ttl, retention */
    {REDIS GROUP "types\n",
     "worker.conf:4: wrong number of arguments for \"types\" (expected 1 or "
     "more, got 0)"},
    {REDIS GROUP "types A B A\n",
     "worker.conf:4: event type \"A\" is listed twice"},
    {REDIS GROUP "types \"Order Confirmed\"\n",
     "worker.conf:4: bad event type \"Order Confirmed\" for \"types\" "
     "(printable ASCII without spaces, at most 128 bytes)"},
    {REDIS GROUP "types OrderConfirmed\ntypes OrderConfirmed\n",
     "worker.conf:5: duplicate \"types\" (already set at line 4)"},
    {REDIS "done-ttl 0\n" GROUP,
     "worker.conf:2: \"done-ttl\" must be between 1s and 365d, got \"0\""},
    {REDIS "retention 366d\n" GROUP,
     "worker.conf:2: \"retention\" must be between 0 and 365d, got "
     "\"366d\""},
    {REDIS "retention 5\n" GROUP,
     "worker.conf:2: bad duration \"5\" for \"retention\" (expected a "
     "number and a unit: 250ms, 5s, 2m, 1h)"},
    {REDIS GROUP "retention 1h\n",
     "worker.conf:4: \"retention\" is a global directive: it must come "
     "before the first group"},

    /* urls */
    {REDIS "group g\nurl ftp://127.0.0.1/g\n",
     "worker.conf:3: bad url \"ftp://127.0.0.1/g\" (expected http:// or "
     "https://)"},
    {REDIS "group g\nurl 127.0.0.1:8094/g\n",
     "worker.conf:3: bad url \"127.0.0.1:8094/g\" (expected http:// or "
     "https://)"},
    {REDIS "group g\nurl http://\n",
     "worker.conf:3: bad url \"http://\" (no host)"},
    {REDIS "group g\nurl https:///g\n",
     "worker.conf:3: bad url \"https:///g\" (no host)"},
    {REDIS "group g\nurl \"http://h/a b\"\n",
     "worker.conf:3: bad url \"http://h/a b\" (spaces and control "
     "characters must be percent-encoded)"},
    {REDIS "group g\nurl \"\"\n", "worker.conf:3: empty value for \"url\""},

    /* addresses */
    {"redis 127.0.0.1\n", "worker.conf:1: bad address \"127.0.0.1\" for "
     "\"redis\" (expected host:port or unix:/path)"},
    {"redis :6380\n", "worker.conf:1: bad address \":6380\" for \"redis\" "
     "(expected host:port or unix:/path)"},
    {"redis 127.0.0.1:\n", "worker.conf:1: bad address \"127.0.0.1:\" for "
     "\"redis\" (expected host:port or unix:/path)"},
    {"redis 127.0.0.1:63a\n", "worker.conf:1: bad address \"127.0.0.1:63a\" "
     "for \"redis\" (expected host:port or unix:/path)"},
    {"redis 127.0.0.1:-1\n", "worker.conf:1: bad address \"127.0.0.1:-1\" "
     "for \"redis\" (expected host:port or unix:/path)"},
    {"redis 127.0.0.1:0\n", "worker.conf:1: bad address \"127.0.0.1:0\" for "
     "\"redis\" (the port must be between 1 and 65535)"},
    {"redis 127.0.0.1:65536\n", "worker.conf:1: bad address "
     "\"127.0.0.1:65536\" for \"redis\" (the port must be between 1 and "
     "65535)"},
    {"redis ::1:6380\n", "worker.conf:1: bad address \"::1:6380\" for "
     "\"redis\" (write an IPv6 address in brackets: [::1]:6379)"},
    {"redis [::1]\n", "worker.conf:1: bad address \"[::1]\" for \"redis\" "
     "(expected host:port or unix:/path)"},
    {"redis []:6380\n", "worker.conf:1: bad address \"[]:6380\" for "
     "\"redis\" (expected host:port or unix:/path)"},
    {"redis unix:\n", "worker.conf:1: bad address \"unix:\" for \"redis\" "
     "(expected host:port or unix:/path)"},
    {"redis unix:/tmp/" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
     "worker.conf:1: bad address \"unix:/tmp/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"... for \"redis\" "
     "(a socket path has at most 107 bytes)"},
    {REDIS "admin unix:/tmp/admin.sock\n", "worker.conf:2: bad address "
     "\"unix:/tmp/admin.sock\" for \"admin\" (expected host:port)"},
    {REDIS "admin 6381\n", "worker.conf:2: bad address \"6381\" for "
     "\"admin\" (expected host:port)"},

    /* quoting */
    {"redis \"127.0.0.1:6380\n", "worker.conf:1: unbalanced quotes"},
    {"log 'a\\'\n", "worker.conf:1: unbalanced quotes"},
    {"log \"a\"b\n", "worker.conf:1: a closing quote must be followed by a "
     "space or the end of the line"},
    {"log \"a\\x00b\"\n", "worker.conf:1: NUL byte in a quoted argument"},

    /* other values */
    {REDIS "group g\nhandler grpc\n", "worker.conf:3: unknown handler "
     "\"grpc\" (the only handler is \"http\")"},
    {REDIS "group a:b\n", "worker.conf:2: bad group name \"a:b\" (letters, "
     "digits, '-', '_' and '.' only)"},
    {REDIS "group \"\"\n", "worker.conf:2: empty group name"},
    {REDIS "redis-password \"\"\n",
     "worker.conf:2: empty value for \"redis-password\""},
    {REDIS GROUP "schema-versions 1 2 1\n",
     "worker.conf:4: schema version 1 is listed twice"},
    {REDIS GROUP "schema-versions 1 v2\n",
     "worker.conf:4: bad number \"v2\" for \"schema-versions\""},
    {REDIS GROUP "schema-versions 65536\n",
     "worker.conf:4: \"schema-versions\" must be between 0 and 65535, got "
     "\"65536\""},
    {REDIS "dead-letter-stream checkout:events\n" GROUP,
     "worker.conf:2: group \"g\" reads the dead-letter stream "
     "\"checkout:events\""},
    {REDIS GROUP "stream checkout:events:dlq\n",
     "worker.conf:4: group \"g\" reads the dead-letter stream "
     "\"checkout:events:dlq\""},

    /* messages show arguments escaped */
    {"\"\\x1b[2J\\n\" 1\n",
     "worker.conf:1: unknown directive \"\\x1b[2J\\x0a\""},
};

START_TEST(test_error) {
    workerConfig *cfg = load(bad[_i].text);

    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, bad[_i].err);
}
END_TEST

START_TEST(test_error_file) {
    static const char nul[] = REDIS GROUP "log a\0b\n";
    workerConfig *cfg = &sentinel;
    char *path = tempFile(nul, sizeof(nul) - 1), expect[128];

    ck_assert_int_eq(configLoad(path, &cfg, err, sizeof(err)), CONFIG_ERR);
    ck_assert_ptr_null(cfg);
    snprintf(expect, sizeof(expect), "%s:4: NUL byte in the line", path);
    ck_assert_str_eq(err, expect);
    unlink(path);
    free(path);

    ck_assert_int_eq(configLoad("/nonexistent/worker.conf", &cfg, err,
                                sizeof(err)), CONFIG_ERR);
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, "/nonexistent/worker.conf: cannot open: No such "
                     "file or directory");

    ck_assert_int_eq(configLoad("/", &cfg, err, sizeof(err)), CONFIG_ERR);
    ck_assert_str_eq(err, "/: cannot read: Is a directory");
}
END_TEST

START_TEST(test_error_file_size) {
    size_t limit = 1024 * 1024;
    char *data = malloc(limit + 1), *path;
    workerConfig *cfg;

    ck_assert_ptr_nonnull(data);

    /* exactly at the limit: read (and found wanting) */
    memset(data, '#', limit);
    memcpy(data, REDIS GROUP, strlen(REDIS GROUP));
    data[strlen(REDIS GROUP)] = '#';
    path = tempFile(data, limit);
    ck_assert_int_eq(configLoad(path, &cfg, err, sizeof(err)), CONFIG_OK);
    configFree(cfg);
    unlink(path);
    free(path);

    /* one byte more */
    data[limit] = '#';
    path = tempFile(data, limit + 1);
    ck_assert_int_eq(configLoad(path, &cfg, err, sizeof(err)), CONFIG_ERR);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_nonnull(strstr(err, ": larger than 1048576 bytes: not a "
                                 "config file"));
    ck_assert_int_eq(strncmp(err, path, strlen(path)), 0);
    unlink(path);
    free(path);
    free(data);
}
END_TEST

START_TEST(test_error_buffer) {
    workerConfig *cfg;
    char small[16];

    /* cut to the buffer, always terminated */
    ck_assert_int_eq(configLoadString("foo\n", "worker.conf", &cfg, small,
                                      sizeof(small)), CONFIG_ERR);
    ck_assert_str_eq(small, "worker.conf:1: ");
    ck_assert_int_eq(configLoadString("foo\n", "a-much-longer-name.conf",
                                      &cfg, small, sizeof(small)),
                     CONFIG_ERR);
    ck_assert_str_eq(small, "a-much-longer-n");

    /* no buffer at all */
    ck_assert_int_eq(configLoadString("foo\n", "worker.conf", &cfg, NULL, 0),
                     CONFIG_ERR);
    ck_assert_ptr_null(cfg);
    configFree(NULL);
}
END_TEST

/* ------------------------------------------------------------ valid files */

/* Checks every field of a group. */
static void checkGroup(const groupConfig *g, const char *name, int line,
                       const char *stream, const char *url,
                       long long timeout, int concurrency, int attempts,
                       long long base, long long cap, long long min_idle) {
    ck_assert_str_eq(g->name, name);
    ck_assert_int_eq(g->line, line);
    ck_assert_str_eq(g->stream, stream);
    ck_assert_int_eq(g->handler, HANDLER_HTTP);
    ck_assert_str_eq(g->url, url);
    ck_assert_int_eq(g->timeout_ms, timeout);
    ck_assert_int_eq(g->concurrency, concurrency);
    ck_assert_int_eq(g->max_attempts, attempts);
    ck_assert_int_eq(g->backoff_base_ms, base);
    ck_assert_int_eq(g->backoff_cap_ms, cap);
    ck_assert_int_eq(g->min_idle_ms, min_idle);
}

START_TEST(test_defaults) {
    workerConfig *cfg = load(REDIS GROUP);

    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(cfg->redis.host, "127.0.0.1");
    ck_assert_int_eq(cfg->redis.port, 6380);
    ck_assert_ptr_null(cfg->redis.path);
    ck_assert_ptr_null(cfg->redis_password);
    ck_assert_int_eq(cfg->redis_db, 0);
    ck_assert_ptr_null(cfg->consumer_name);
    ck_assert_str_eq(cfg->admin.host, "127.0.0.1");
    ck_assert_int_eq(cfg->admin.port, 6381);
    ck_assert_ptr_null(cfg->admin.path);
    ck_assert_ptr_null(cfg->admin_password);
    ck_assert_str_eq(cfg->dead_letter_stream, "checkout:events:dlq");
    ck_assert_str_eq(cfg->log, "stderr");
    ck_assert_int_eq(cfg->shutdown_timeout_ms, 10000);
    ck_assert_int_eq(cfg->done_ttl_ms, 7LL * 24 * 3600 * 1000);
    ck_assert_int_eq(cfg->retention_ms, 3600 * 1000);
    ck_assert_int_eq(cfg->ngroups, 1);
    checkGroup(&cfg->groups[0], "g", 2, "checkout:events",
               "http://127.0.0.1:8094/g", 5000, 1, 5, 200, 30000, 60000);
    ck_assert_int_eq(cfg->groups[0].nschema_versions, 1);
    ck_assert_int_eq(cfg->groups[0].schema_versions[0], 1);
    ck_assert_ptr_null(cfg->groups[0].types);
    ck_assert_int_eq(cfg->groups[0].ntypes, 0);
    configFree(cfg);
}
END_TEST

START_TEST(test_every_field) {
    static const char text[] =
        "# every directive, with the format's corners\r\n"
        "redis unix:/run/redis/redis.sock   # a comment after a directive\r\n"
        "redis-password \"p a\\\"ss\\x21\"\n"
        "redis-db 15\n"
        "consumer-name 'web1:1234 it\\'s'\n"
        "ADMIN [::1]:7000\n"
        "admin-password '#not-a-comment'\n"
        "\tdead-letter-stream   dlq\n"
        "log /var/log/checkout-worker.log\n"
        "shutdown-timeout 0ms\n"
        "done-ttl 30d\n"
        "retention 0\n"
        "group receipt\n"
        "    stream \"orders stream\"\n"
        "    handler HTTP\n"
        "    url https://receipts.example:8443/r?x=1#frag\n"
        "    timeout 250MS\n"
        "    concurrency 1024\n"
        "    max-attempts 1000\n"
        "    backoff-base 1ms\n"
        "    backoff-cap 1ms\n"
        "    min-idle 24h\n"
        "    schema-versions 1 2 0 65535\n"
        "    types OrderConfirmed com.example.x/y\n"
        "group review.v2_a-b\n"
        "    url HTTP://h\n"
        "    timeout 1h\n"
        "    min-idle 61m\n"
        "    backoff-base 2m\n"
        "    backoff-cap 2m";       /* no newline at the end */
    workerConfig *cfg = load(text);
    const groupConfig *g;

    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_ptr_null(cfg->redis.host);
    ck_assert_int_eq(cfg->redis.port, 0);
    ck_assert_str_eq(cfg->redis.path, "/run/redis/redis.sock");
    ck_assert_str_eq(cfg->redis_password, "p a\"ss!");
    ck_assert_int_eq(cfg->redis_db, 15);
    ck_assert_str_eq(cfg->consumer_name, "web1:1234 it's");
    ck_assert_str_eq(cfg->admin.host, "::1");
    ck_assert_int_eq(cfg->admin.port, 7000);
    ck_assert_ptr_null(cfg->admin.path);
    ck_assert_str_eq(cfg->admin_password, "#not-a-comment");
    ck_assert_str_eq(cfg->dead_letter_stream, "dlq");
    ck_assert_str_eq(cfg->log, "/var/log/checkout-worker.log");
    ck_assert_int_eq(cfg->shutdown_timeout_ms, 0);
    ck_assert_int_eq(cfg->done_ttl_ms, 30LL * 24 * 3600 * 1000);
    ck_assert_int_eq(cfg->retention_ms, 0);
    ck_assert_int_eq(cfg->ngroups, 2);

    g = &cfg->groups[0];
    checkGroup(g, "receipt", 13, "orders stream",
               "https://receipts.example:8443/r?x=1#frag", 250, 1024, 1000,
               1, 1, 24 * 3600 * 1000LL);
    ck_assert_int_eq(g->nschema_versions, 4);
    ck_assert_int_eq(g->schema_versions[0], 1);
    ck_assert_int_eq(g->schema_versions[1], 2);
    ck_assert_int_eq(g->schema_versions[2], 0);
    ck_assert_int_eq(g->schema_versions[3], 65535);
    ck_assert_int_eq(g->ntypes, 2);
    ck_assert_str_eq(g->types[0], "OrderConfirmed");
    ck_assert_str_eq(g->types[1], "com.example.x/y");

    g = &cfg->groups[1];
    checkGroup(g, "review.v2_a-b", 25, "checkout:events", "HTTP://h",
               3600 * 1000, 1, 5, 120000, 120000, 61 * 60 * 1000);
    ck_assert_int_eq(g->nschema_versions, 1);
    ck_assert_int_eq(g->schema_versions[0], 1);
    ck_assert_ptr_null(g->types);
    configFree(cfg);
}
END_TEST

START_TEST(test_demo_conf) {
    workerConfig *cfg;
    int i;

    ck_assert_msg(configLoad(WORKER_CONF, &cfg, err, sizeof(err)) ==
                  CONFIG_OK, "%s", err);
    ck_assert_str_eq(cfg->redis.host, "127.0.0.1");
    ck_assert_int_eq(cfg->redis.port, 6380);
    ck_assert_ptr_null(cfg->redis.path);
    ck_assert_ptr_null(cfg->redis_password);
    ck_assert_int_eq(cfg->redis_db, 0);
    ck_assert_ptr_null(cfg->consumer_name);
    ck_assert_str_eq(cfg->admin.host, "127.0.0.1");
    ck_assert_int_eq(cfg->admin.port, 6381);
    ck_assert_ptr_null(cfg->admin_password);
    ck_assert_str_eq(cfg->dead_letter_stream, "checkout:events:dlq");
    ck_assert_str_eq(cfg->log, ".demo/logs/worker.log");
    ck_assert_int_eq(cfg->shutdown_timeout_ms, 10000);

    ck_assert_int_eq(cfg->ngroups, 5);
    checkGroup(&cfg->groups[0], "receipt", 17, "checkout:events",
               "http://127.0.0.1:8094/receipt", 5000, 4, 5, 200, 5000,
               30000);
    checkGroup(&cfg->groups[1], "fulfillment", 30, "checkout:events",
               "http://127.0.0.1:8094/fulfillment", 5000, 2, 8, 200, 5000,
               30000);
    checkGroup(&cfg->groups[2], "analytics", 39, "checkout:events",
               "http://127.0.0.1:8094/analytics", 2000, 8, 3, 100, 2000,
               30000);
    checkGroup(&cfg->groups[3], "support", 48, "checkout:events",
               "http://127.0.0.1:8094/support", 5000, 1, 5, 200, 5000,
               30000);
    checkGroup(&cfg->groups[4], "review", 59, "checkout:events",
               "http://127.0.0.1:8094/review", 15000, 2, 10, 500, 10000,
               60000);
    for (i = 0; i < cfg->ngroups; i++) {
        ck_assert_int_eq(cfg->groups[i].nschema_versions, 1);
        ck_assert_int_eq(cfg->groups[i].schema_versions[0], 1);
    }
    configFree(cfg);
}
END_TEST

START_TEST(test_addresses) {
    static const struct {
        const char *line;
        const char *host;
        int port;
    } ok[] = {
        {"redis localhost:1\n", "localhost", 1},
        {"redis redis.internal.example:65535\n", "redis.internal.example",
         65535},
        {"redis [fe80::1%eth0]:6379\n", "fe80::1%eth0", 6379},
        {"redis 10.0.0.7:06380\n", "10.0.0.7", 6380},
    };
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char text[256];
        workerConfig *cfg;

        snprintf(text, sizeof(text), "%s%s", ok[i].line, GROUP);
        cfg = load(text);
        ck_assert_msg(cfg != NULL, "%s", err);
        ck_assert_str_eq(cfg->redis.host, ok[i].host);
        ck_assert_int_eq(cfg->redis.port, ok[i].port);
        ck_assert_ptr_null(cfg->redis.path);
        configFree(cfg);
    }
}
END_TEST

START_TEST(test_many_groups) {
    char text[64 * 1024];
    size_t n = 0;
    workerConfig *cfg;
    int i;

    n += (size_t)snprintf(text + n, sizeof(text) - n, REDIS);
    for (i = 0; i < 200; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "group g%d\nurl http://h/%d\n"
                              "schema-versions 3 2 1 4 5 6 7 8 9\n", i, i);
    cfg = load(text);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_eq(cfg->ngroups, 200);
    ck_assert_str_eq(cfg->groups[199].name, "g199");
    ck_assert_int_eq(cfg->groups[199].line, 2 + 199 * 3);
    ck_assert_int_eq(cfg->groups[199].nschema_versions, 9);
    ck_assert_int_eq(cfg->groups[199].schema_versions[8], 9);
    configFree(cfg);
}
END_TEST

static Suite *configSuite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("errors");

    tcase_add_loop_test(tc, test_error, 0, sizeof(bad) / sizeof(bad[0]));
    tcase_add_test(tc, test_error_file);
    tcase_add_test(tc, test_error_file_size);
    tcase_add_test(tc, test_error_buffer);
    suite_add_tcase(s, tc);

    tc = tcase_create("valid");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_every_field);
    tcase_add_test(tc, test_demo_conf);
    tcase_add_test(tc, test_addresses);
    tcase_add_test(tc, test_many_groups);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(configSuite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
