/* Unit tests of script.c: a script's EVAL command is sent only whole,
 * with the layout the generated header names (lua/touch.lua's, an
 * open-ended script, here), and a command that is not whole is refused
 * and logged, never cut short. */

#define _POSIX_C_SOURCE 200809L     /* mkstemp */

#include "script.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "touch.lua.h"

static char logPath[64];

static void setup(void) {
    char err[256];
    int fd;

    strcpy(logPath, "/tmp/test_script_XXXXXX");
    fd = mkstemp(logPath);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(logOpen(logPath, err, sizeof(err)), 0);
}

static void teardown(void) {
    logClose();
    unlink(logPath);
}

/* The log so far, in a static buffer. */
static const char *logText(void) {
    static char buf[4096];
    FILE *fp = fopen(logPath, "r");
    size_t n;

    ck_assert_ptr_nonnull(fp);
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* A touch of 'n' held ids, every slot set. */
static void fillTouch(scriptCmd *s, int n, char ids[][16]) {
    int i;

    ck_assert_int_eq(scriptInit(s, SCRIPT_TOUCH_LUA, SCRIPT_TOUCH_NUMKEYS,
                                SCRIPT_TOUCH_ARGC + n), 0);
    scriptSet(s, SCRIPT_TOUCH_STREAM, "checkout:events");
    scriptSet(s, SCRIPT_TOUCH_DLQ, "checkout:events:dlq");
    scriptSet(s, SCRIPT_TOUCH_RETRIES, "checkout:worker:retry:receipt");
    scriptSet(s, SCRIPT_TOUCH_GROUP, "receipt");
    scriptSet(s, SCRIPT_TOUCH_CONSUMER, "host:1");
    scriptSet(s, SCRIPT_TOUCH_NOW, "2026-12-05T12:00:00.000Z");
    scriptSet(s, SCRIPT_TOUCH_STREAM_NAME, "checkout:events");
    for (i = 0; i < n; i++) {
        snprintf(ids[i], 16, "%d-0", i + 1);
        scriptSet(s, SCRIPT_TOUCH_FIRST_ID + i, ids[i]);
    }
}

START_TEST(test_whole_command) {
    char ids[3][16];
    scriptCmd s;

    fillTouch(&s, 3, ids);
    ck_assert_int_eq(scriptCheck(&s), 0);
    /* EVAL <text> 3 <3 keys> <4 arguments> <the ids, the last included> */
    ck_assert_int_eq(s.argc, 3 + 3 + 4 + 3);
    ck_assert_str_eq(s.argv[0], "EVAL");
    ck_assert_str_eq(s.argv[1], SCRIPT_TOUCH_LUA);
    ck_assert_str_eq(s.argv[2], "3");
    ck_assert_str_eq(s.argv[3], "checkout:events");
    ck_assert_str_eq(s.argv[9], "checkout:events");
    ck_assert_str_eq(s.argv[10], "1-0");
    ck_assert_str_eq(s.argv[s.argc - 1], "3-0");
    ck_assert_uint_eq(s.lens[s.argc - 1], 3);
    scriptFree(&s);
    ck_assert_str_eq(logText(), "");
}
END_TEST

START_TEST(test_one_held_id) {
    char ids[1][16];
    scriptCmd s;

    /* the newest held entry, alone, is in the command too */
    fillTouch(&s, 1, ids);
    ck_assert_int_eq(scriptCheck(&s), 0);
    ck_assert_str_eq(s.argv[s.argc - 1], "1-0");
    scriptFree(&s);
}
END_TEST

START_TEST(test_unset_slot_refused) {
    scriptCmd s;

    ck_assert_int_eq(scriptInit(&s, SCRIPT_TOUCH_LUA, SCRIPT_TOUCH_NUMKEYS,
                                SCRIPT_TOUCH_ARGC + 1), 0);
    scriptSet(&s, SCRIPT_TOUCH_STREAM, "checkout:events");
    ck_assert_int_eq(scriptCheck(&s), -1);
    ck_assert_ptr_nonnull(strstr(logText(),
        "level=error msg=\"a script's command has no argument 4 of 11: "
        "not sent\""));
    ck_assert_int_eq(scriptSend(&s, NULL, NULL, NULL), -1);
    scriptFree(&s);
}
END_TEST

START_TEST(test_overflow_refused) {
    char ids[2][16];
    scriptCmd s;

    fillTouch(&s, 2, ids);
    scriptSet(&s, SCRIPT_TOUCH_FIRST_ID + 2, "3-0");
    ck_assert_int_eq(scriptCheck(&s), -1);
    ck_assert_ptr_nonnull(strstr(logText(),
        "level=error msg=\"a script's command was given more arguments "
        "than its 12: not sent\""));
    /* the slots it has are untouched */
    ck_assert_str_eq(s.argv[s.argc - 1], "2-0");
    scriptFree(&s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("script");
    TCase *tc = tcase_create("command");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_whole_command);
    tcase_add_test(tc, test_one_held_id);
    tcase_add_test(tc, test_unset_slot_refused);
    tcase_add_test(tc, test_overflow_refused);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
