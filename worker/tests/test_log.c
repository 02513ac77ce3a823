/* Unit tests of log.c: logfmt lines, their quoting and cutting, and the
 * log file's life (open, reopen, close). */

#define _POSIX_C_SOURCE 200809L     /* mkstemp, truncate */

#include "log.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char err[512];

static char logPath[64];
static char logBuf[3 * LOG_MAX_LINE];

/* Reads the log file, empties it, and returns its size. The text is in
 * 'logBuf'. */
static size_t readLog(void) {
    FILE *fp = fopen(logPath, "r");
    size_t n;

    ck_assert_ptr_nonnull(fp);
    n = fread(logBuf, 1, sizeof(logBuf) - 1, fp);
    logBuf[n] = '\0';
    fclose(fp);
    ck_assert_int_eq(truncate(logPath, 0), 0);
    return n;
}

/* Reads the log file into 'lines' (at most 'max', each without its '\n'),
 * empties it and returns the number of lines. */
static int readLines(char **lines, int max) {
    char *s = logBuf, *nl;
    int n = 0;

    readLog();
    while ((nl = strchr(s, '\n')) != NULL) {
        ck_assert_int_lt(n, max);
        *nl = '\0';
        lines[n++] = s;
        s = nl + 1;
    }
    ck_assert_str_eq(s, "");    /* every line ends in '\n' */
    return n;
}

/* Asserts that 'line' is "ts=<RFC 3339 UTC with ms> " then 'rest'. */
static void assertLine(const char *line, const char *rest) {
    static const char shape[] = "ts=dddd-dd-ddTdd:dd:dd.dddZ ";
    size_t i;

    for (i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd')
            ck_assert_msg(line[i] >= '0' && line[i] <= '9', "%s", line);
        else
            ck_assert_msg(line[i] == shape[i], "%s", line);
    }
    ck_assert_str_eq(line + sizeof(shape) - 1, rest);
}

static void logSetup(void) {
    int fd;

    strcpy(logPath, "/tmp/test_log.XXXXXX");
    fd = mkstemp(logPath);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(logOpen(logPath, err, sizeof(err)), 0);
}

static void logTeardown(void) {
    logClose();
    unlink(logPath);
}

START_TEST(test_log_quoting) {
    char *lines[4];

    logSetup();
    logStart(LOG_INFO);
    logStr("group", "receipt");
    logStr("id", "1764190000000-0");
    logStr("empty", "");
    logStr("space", "a b");
    logStr("eq", "a=b");
    logStr("quote", "say \"hi\"");
    logStr("bs", "back\\slash");
    logStr("bsq", "back\\ slash");
    logStrLen("ctl", "\n\r\t\x01\x7f\xc3\xa9\0.", 9);
    logStrLen("nul", "a\0b", 3);
    logStr("url", "http://h/p?x=1");
    logInt("n", -42);
    logInt("max", 9223372036854775807LL);
    logEnd();
    logStart(LOG_WARN);
    logEnd();
    logEnd();                   /* no line begun: nothing */
    logStr("x", "y");           /* likewise */
    logMsg(LOG_ERROR, "redis link %s: %d", "down", 3);
    logMsg(LOG_INFO, "plain");

    ck_assert_int_eq(readLines(lines, 4), 4);
    assertLine(lines[0], "level=info group=receipt id=1764190000000-0 "
               "empty=\"\" space=\"a b\" eq=\"a=b\" "
               "quote=\"say \\\"hi\\\"\" bs=back\\slash "
               "bsq=\"back\\\\ slash\" "
               "ctl=\"\\n\\r\\t\\x01\\x7f\\xc3\\xa9\\x00.\" "
               "nul=\"a\\x00b\" url=\"http://h/p?x=1\" n=-42 "
               "max=9223372036854775807");
    assertLine(lines[1], "level=warn");
    assertLine(lines[2], "level=error msg=\"redis link down: 3\"");
    assertLine(lines[3], "level=info msg=plain");
    logTeardown();
}
END_TEST

/* A line is cut at LOG_MAX_LINE bytes, the cut value ending in "...", and
 * the pairs after it dropped. */
START_TEST(test_log_long) {
    static char big[2 * LOG_MAX_LINE];
    size_t n;

    logSetup();
    memset(big, 'x', sizeof(big) - 1);
    logStart(LOG_INFO);
    logStr("a", "1");
    logStr("big", big);
    logStr("after", "2");
    logEnd();
    n = readLog();
    ck_assert_uint_eq(n, LOG_MAX_LINE - 1);     /* no closing quote */
    ck_assert_int_eq(memcmp(logBuf + 28, "level=info a=1 big=xxx", 22), 0);
    ck_assert_int_eq(memcmp(logBuf + n - 5, "x...\n", 5), 0);

    memset(big, ' ', sizeof(big) - 1);
    logStart(LOG_INFO);
    logStr("big", big);
    logStr("after", "2");
    logEnd();
    n = readLog();
    ck_assert_uint_eq(n, LOG_MAX_LINE);
    ck_assert_int_eq(memcmp(logBuf + n - 6, " ...\"\n", 6), 0);

    /* escapes are never cut in half */
    memset(big, '\n', sizeof(big) - 1);
    logStart(LOG_INFO);
    logStr("big", big);
    logEnd();
    n = readLog();
    ck_assert_uint_le(n, LOG_MAX_LINE);
    ck_assert_int_eq(memcmp(logBuf + n - 7, "\\n...\"\n", 7), 0);

    /* a message longer than a line */
    memset(big, 'm', sizeof(big) - 1);
    logMsg(LOG_INFO, "%s", big);
    n = readLog();
    ck_assert_uint_eq(n, LOG_MAX_LINE - 1);
    ck_assert_int_eq(memcmp(logBuf + n - 5, "m...\n", 5), 0);
    logTeardown();
}
END_TEST

START_TEST(test_log_files) {
    char moved[80], *lines[4];

    logSetup();
    logMsg(LOG_INFO, "one");

    /* rotation: the file is moved away, then reopened under its path */
    snprintf(moved, sizeof(moved), "%s.1", logPath);
    ck_assert_int_eq(rename(logPath, moved), 0);
    logMsg(LOG_INFO, "two");
    ck_assert_int_eq(logReopen(), 0);
    logMsg(LOG_INFO, "three");
    ck_assert_int_eq(readLines(lines, 4), 1);
    assertLine(lines[0], "level=info msg=three");
    ck_assert_int_eq(unlink(moved), 0);

    /* a reopen that fails keeps the file it has */
    ck_assert_int_eq(rename(logPath, moved), 0);
    ck_assert_int_eq(mkdir(logPath, 0700), 0);
    ck_assert_int_eq(logReopen(), -1);
    logMsg(LOG_INFO, "four");
    ck_assert_int_eq(rmdir(logPath), 0);
    ck_assert_int_eq(rename(moved, logPath), 0);
    ck_assert_int_eq(readLines(lines, 4), 1);
    assertLine(lines[0], "level=info msg=four");

    /* so does an open that fails */
    ck_assert_int_eq(logOpen("/nonexistent/dir/w.log", err, sizeof(err)),
                     -1);
    ck_assert_str_eq(err, "cannot open /nonexistent/dir/w.log: No such "
                     "file or directory");
    logMsg(LOG_INFO, "five");
    ck_assert_int_eq(readLines(lines, 4), 1);
    assertLine(lines[0], "level=info msg=five");

    /* stderr has nothing to reopen */
    ck_assert_int_eq(logOpen("stderr", err, sizeof(err)), 0);
    ck_assert_int_eq(logReopen(), 0);
    logTeardown();
}
END_TEST

static Suite *logSuite(void) {
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");

    tcase_add_test(tc, test_log_quoting);
    tcase_add_test(tc, test_log_long);
    tcase_add_test(tc, test_log_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(logSuite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
