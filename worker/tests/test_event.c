/* Unit tests of event.c: a stream entry's fields checked before any
 * delivery, every error text exactly. */

#include "event.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PAIRS 16

/* A field of a test entry; len 0 means strlen(value). */
typedef struct pair {
    const char *name;
    const char *value;
    size_t len;
} pair;

static const pair good[] = {
    {"ce_specversion", "1.0", 0},
    {"ce_id", "chk_1", 0},
    {"ce_type", "CheckoutConfirmed", 0},
    {"ce_source", "/checkout", 0},
    {"ce_time", "2026-11-26T21:00:00.123Z", 0},
    {"ce_subject", "chk_1", 0},
    {"ce_schemaversion", "1", 0},
    {"content-type", "application/json", 0},
    {"data", "{\"total\":100,\"items\":[\"a\",\"b\"]}", 0},
};
#define NGOOD (sizeof(good) / sizeof(good[0]))

static const int v1[] = {1};
static streamEvent ev;
static char err[512];
static char store[2 * MAX_PAIRS][1024];     /* the entry, as hiredis holds
                                             * it: NUL-terminated copies */
static char *fields[2 * MAX_PAIRS];
static size_t lens[2 * MAX_PAIRS];

/* Parses the 'n' pairs as an entry, accepting the 'nversions' 'versions'. */
static int parseWith(const pair *pairs, size_t n, const int *versions,
                     int nversions) {
    size_t i;

    ck_assert_uint_le(n, MAX_PAIRS);
    for (i = 0; i < n; i++) {
        size_t len = pairs[i].len ? pairs[i].len : strlen(pairs[i].value);

        ck_assert_uint_lt(len, sizeof(store[0]));
        fields[2 * i] = strcpy(store[2 * i], pairs[i].name);
        lens[2 * i] = strlen(pairs[i].name);
        memcpy(store[2 * i + 1], pairs[i].value, len);
        store[2 * i + 1][len] = '\0';
        fields[2 * i + 1] = store[2 * i + 1];
        lens[2 * i + 1] = len;
    }
    memset(err, 'x', sizeof(err));
    return eventParse(&ev, fields, lens, n, versions, nversions, err,
                      sizeof(err));
}

/* Parses the good entry with the field 'name' set to 'value' (of 'len'
 * bytes, 0: strlen), appended if the entry has no such field, or removed
 * when 'value' is NULL. */
static int parseGood(const char *name, const char *value, size_t len) {
    pair pairs[MAX_PAIRS];
    size_t i, n = 0;
    int found = 0;

    for (i = 0; i < NGOOD; i++) {
        if (strcmp(good[i].name, name) == 0) {
            found = 1;
            if (value == NULL) continue;
            pairs[n].name = name;
            pairs[n].value = value;
            pairs[n++].len = len;
        } else {
            pairs[n++] = good[i];
        }
    }
    if (!found && value != NULL) {
        pairs[n].name = name;
        pairs[n].value = value;
        pairs[n++].len = len;
    }
    return parseWith(pairs, n, v1, 1);
}

static void assertMalformed(int rc, const char *msg) {
    ck_assert_int_eq(rc, EVENT_MALFORMED);
    ck_assert_str_eq(err, msg);
}

static void assertOk(int rc) {
    ck_assert_msg(rc == EVENT_OK, "rc %d: %s", rc, err);
    ck_assert_str_eq(err, "");
}

START_TEST(test_event_good) {
    assertOk(parseWith(good, NGOOD, v1, 1));
    ck_assert_str_eq(ev.specversion, "1.0");
    ck_assert_str_eq(ev.id, "chk_1");
    ck_assert_str_eq(ev.type, "CheckoutConfirmed");
    ck_assert_str_eq(ev.source, "/checkout");
    ck_assert_str_eq(ev.time, "2026-11-26T21:00:00.123Z");
    ck_assert_str_eq(ev.subject, "chk_1");
    ck_assert_str_eq(ev.schemaversion, "1");
    ck_assert_str_eq(ev.content_type, "application/json");
    ck_assert_ptr_eq(ev.data, fields[17]);
    ck_assert_uint_eq(ev.datalen, strlen(good[8].value));
    ck_assert_ptr_null(ev.replay_group);
    ck_assert_int_eq(ev.major, 1);

    /* optional fields absent; unknown fields, even twice, ignored */
    assertOk(parseGood("ce_time", NULL, 0));
    ck_assert_ptr_null(ev.time);
    assertOk(parseGood("content-type", NULL, 0));
    ck_assert_str_eq(ev.content_type, "application/json");
    assertOk(parseGood("content-type", "text/plain; charset=utf-8", 0));
    ck_assert_str_eq(ev.content_type, "text/plain; charset=utf-8");
    {
        pair pairs[NGOOD + 2];

        memcpy(pairs, good, sizeof(good));
        pairs[NGOOD].name = pairs[NGOOD + 1].name = "x-trace";
        pairs[NGOOD].value = pairs[NGOOD + 1].value = "a b\r\n";
        pairs[NGOOD].len = pairs[NGOOD + 1].len = 0;
        assertOk(parseWith(pairs, NGOOD + 2, v1, 1));
    }

    /* replay_group is passed on as it is */
    assertOk(parseGood("replay_group", "receipt", 0));
    ck_assert_str_eq(ev.replay_group, "receipt");
}
END_TEST

static const char *required[] = {
    "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_subject",
    "ce_schemaversion", "data"
};

START_TEST(test_event_missing) {
    char msg[128];

    snprintf(msg, sizeof(msg), "malformed_event: missing %s", required[_i]);
    assertMalformed(parseGood(required[_i], NULL, 0), msg);
    /* what is there is still pointed at, for the log */
    if (strcmp(required[_i], "ce_id") != 0) ck_assert_str_eq(ev.id, "chk_1");
}
END_TEST

START_TEST(test_event_empty) {
    static const char *present[] = {
        "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time",
        "ce_subject", "ce_schemaversion", "content-type", "data"
    };
    char msg[128];
    size_t i;

    for (i = 0; i < sizeof(present) / sizeof(present[0]); i++) {
        snprintf(msg, sizeof(msg), "malformed_event: empty %s", present[i]);
        assertMalformed(parseGood(present[i], "", 0), msg);
    }
    /* no fields at all: the first required one is reported */
    assertMalformed(parseWith(good, 0, v1, 1),
                    "malformed_event: missing ce_specversion");
}
END_TEST

START_TEST(test_event_duplicate) {
    pair pairs[NGOOD + 1];

    memcpy(pairs, good, sizeof(good));
    pairs[NGOOD] = good[1];
    pairs[NGOOD].value = "chk_2";
    assertMalformed(parseWith(pairs, NGOOD + 1, v1, 1),
                    "malformed_event: duplicate field ce_id");

    pairs[NGOOD] = good[8];
    assertMalformed(parseWith(pairs, NGOOD + 1, v1, 1),
                    "malformed_event: duplicate field data");

    /* replay_group twice, one in the place of the optional ce_time */
    pairs[4].name = pairs[NGOOD].name = "replay_group";
    pairs[4].value = pairs[NGOOD].value = "a";
    pairs[NGOOD].len = 0;
    assertMalformed(parseWith(pairs, NGOOD + 1, v1, 1),
                    "malformed_event: duplicate field replay_group");
}
END_TEST

/* An odd number of strings cannot be passed as pairs: consumer.c reports
 * "malformed_event: odd number of fields" itself. A name without its value
 * still fails here: the next name becomes a value and a field goes
 * missing. */
START_TEST(test_event_odd) {
    pair pairs[NGOOD];

    memcpy(pairs, good, sizeof(good));
    pairs[1].value = "ce_type";     /* as if ce_id had lost its value */
    pairs[2].name = "CheckoutConfirmed";
    assertMalformed(parseWith(pairs, NGOOD, v1, 1),
                    "malformed_event: missing ce_type");
}
END_TEST

START_TEST(test_event_specversion) {
    assertMalformed(parseGood("ce_specversion", "0.3", 0),
                    "malformed_event: ce_specversion must be 1.0");
    assertMalformed(parseGood("ce_specversion", "1.0 ", 0),
                    "malformed_event: ce_specversion must be 1.0");
    assertMalformed(parseGood("ce_specversion", "1.0\0", 4),
                    "malformed_event: bad byte 0x00 in ce_specversion");
}
END_TEST

START_TEST(test_event_schemaversion) {
    static const int v12[] = {2, 1};
    static const struct {
        const char *value;
        int major;
    } ok[] = {
        {"1", 1}, {"1.3", 1}, {"01", 1}, {"1.0", 1}, {"1.03", 1}
    };
    static const char *malformed[] = {
        "x", "1.", ".1", "1.2.3", "-1", "+1", "1 ", " 1", "1.x", "v1", "1e0"
    };
    pair pairs[NGOOD];
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assertOk(parseGood("ce_schemaversion", ok[i].value, 0));
        ck_assert_int_eq(ev.major, ok[i].major);
    }
    for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        assertMalformed(parseGood("ce_schemaversion", malformed[i], 0),
                        "malformed_event: ce_schemaversion must be N or "
                        "N.M");

    ck_assert_int_eq(parseGood("ce_schemaversion", "2", 0),
                     EVENT_UNSUPPORTED);
    ck_assert_str_eq(err, "unsupported_schema_version: 2");
    ck_assert_int_eq(ev.major, 2);
    ck_assert_str_eq(ev.id, "chk_1");
    ck_assert_int_eq(parseGood("ce_schemaversion", "0.9", 0),
                     EVENT_UNSUPPORTED);
    ck_assert_str_eq(err, "unsupported_schema_version: 0.9");
    ck_assert_int_eq(parseGood("ce_schemaversion",
                               "99999999999999999999.1", 0),
                     EVENT_UNSUPPORTED);
    ck_assert_str_eq(err,
                     "unsupported_schema_version: 99999999999999999999.1");

    /* with versions 2 and 1 accepted */
    memcpy(pairs, good, sizeof(good));
    pairs[6].value = "2.7";
    assertOk(parseWith(pairs, NGOOD, v12, 2));
    ck_assert_int_eq(ev.major, 2);
    pairs[6].value = "3";
    ck_assert_int_eq(parseWith(pairs, NGOOD, v12, 2), EVENT_UNSUPPORTED);
    ck_assert_str_eq(err, "unsupported_schema_version: 3");
}
END_TEST

START_TEST(test_event_version_major) {
    ck_assert_int_eq(eventVersionMajor("12.34", 5), 12);
    ck_assert_int_eq(eventVersionMajor("12.34", 2), 12);
    ck_assert_int_eq(eventVersionMajor("12.34", 3), -1);
    ck_assert_int_eq(eventVersionMajor("", 0), -1);
    ck_assert_int_eq(eventVersionMajor("0", 1), 0);
    ck_assert_int_eq(eventVersionMajor("4294967296", 10), 2147483647);
}
END_TEST

START_TEST(test_event_data) {
    static const char *valid[] = {
        "{}", "[]", "42", "-1.5e3", "\"text\"", "null", "true",
        " {\"a\" : [1, {\"b\": null}]} \n",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
        "\"\\u0000\\ud83d\\ude00\"", "12345678901234567890123"
    };
    static const char *invalid[] = {
        "{", "}", "{\"a\":}", "{} x", "1 2", "{'a':1}", "[1,]", "nul",
        "\"a\nb\"", "{\"a\":1,}", "   ", "/* c */ 1",
        "\xef\xbb\xbf{}"      /* a BOM is UTF-8, but not JSON */
    };
    static const char *badUtf8[] = {
        "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
        "\"\xe2\x82\"", "\"\xc3\"", "\"\x80\"", "\"\xf8\x88\x80\x80\x80\""
    };
    size_t i;

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        assertOk(parseGood("data", valid[i], 0));
    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        assertMalformed(parseGood("data", invalid[i], 0),
                        "malformed_event: data is not valid JSON");
    for (i = 0; i < sizeof(badUtf8) / sizeof(badUtf8[0]); i++)
        assertMalformed(parseGood("data", badUtf8[i], 0),
                        "malformed_event: data is not valid UTF-8");

    /* binary: a NUL byte outside a string, then inside one */
    assertMalformed(parseGood("data", "{}\0", 3),
                    "malformed_event: data is not valid JSON");
    assertMalformed(parseGood("data", "\"a\0b\"", 5),
                    "malformed_event: data is not valid JSON");
    assertOk(parseGood("data", "\"a\" ", 3));
    ck_assert_uint_eq(ev.datalen, 3);
}
END_TEST

START_TEST(test_event_depth) {
    char data[8 * (EVENT_MAX_DEPTH + 1)];
    int depth, i, n;

    for (depth = EVENT_MAX_DEPTH; depth <= EVENT_MAX_DEPTH + 1; depth++) {
        /* {"a":[{"a":[ ... ]}]}: objects and arrays in turn */
        n = 0;
        for (i = 0; i < depth; i++) {
            if (i % 2 == 0) {
                memcpy(data + n, "{\"a\":", 5);
                n += 5;
            } else {
                data[n++] = '[';
            }
        }
        data[n++] = '1';
        for (i = depth - 1; i >= 0; i--) data[n++] = i % 2 ? ']' : '}';
        data[n] = '\0';
        ck_assert_uint_lt((size_t)n, sizeof(store[0]));
        if (depth <= EVENT_MAX_DEPTH)
            assertOk(parseGood("data", data, 0));
        else
            assertMalformed(parseGood("data", data, 0),
                            "malformed_event: data is nested deeper than "
                            "64 levels");
    }
    /* too deep and never closed: the depth is what is reported */
    memset(data, '[', 200);
    ck_assert_uint_lt(200, sizeof(data));
    data[200] = '\0';
    assertMalformed(parseGood("data", data, 0),
                    "malformed_event: data is nested deeper than 64 levels");
}
END_TEST

START_TEST(test_event_bytes) {
    char longer[EVENT_MAX_VALUE + 2];

    assertMalformed(parseGood("ce_id", "chk_1\r\nX-Evil: 1", 0),
                    "malformed_event: bad byte 0x0d in ce_id");
    assertMalformed(parseGood("ce_id", "chk\n", 0),
                    "malformed_event: bad byte 0x0a in ce_id");
    assertMalformed(parseGood("ce_id", "chk 1", 0),
                    "malformed_event: bad byte 0x20 in ce_id");
    assertMalformed(parseGood("ce_subject", "chk\t1", 0),
                    "malformed_event: bad byte 0x09 in ce_subject");
    assertMalformed(parseGood("ce_subject", "chk 1", 0),
                    "malformed_event: bad byte 0x20 in ce_subject");
    assertMalformed(parseGood("ce_source", "/caf\xc3\xa9", 0),
                    "malformed_event: bad byte 0xc3 in ce_source");
    assertMalformed(parseGood("ce_type", "A\0B", 3),
                    "malformed_event: bad byte 0x00 in ce_type");
    assertMalformed(parseGood("ce_type", "A\x7f", 0),
                    "malformed_event: bad byte 0x7f in ce_type");
    assertMalformed(parseGood("content-type", "a/b\r\n", 0),
                    "malformed_event: bad byte 0x0d in content-type");
    assertMalformed(parseGood("ce_time", "2026-11-26T21:00:00Z\n", 0),
                    "malformed_event: bad byte 0x0a in ce_time");

    /* spaces are fine where no key name is built */
    assertOk(parseGood("ce_type", "Checkout Confirmed", 0));
    assertOk(parseGood("ce_source", "checkout service/1", 0));
    assertOk(parseGood("ce_id", "!~{}:/#", 0));

    memset(longer, 'i', sizeof(longer) - 1);
    longer[EVENT_MAX_VALUE] = '\0';
    assertOk(parseGood("ce_id", longer, 0));
    ck_assert_uint_eq(strlen(ev.id), EVENT_MAX_VALUE);
    longer[EVENT_MAX_VALUE] = 'i';
    longer[EVENT_MAX_VALUE + 1] = '\0';
    assertMalformed(parseGood("ce_id", longer, 0),
                    "malformed_event: ce_id longer than 256 bytes");
    assertMalformed(parseGood("ce_type", longer, 0),
                    "malformed_event: ce_type longer than 256 bytes");
}
END_TEST

START_TEST(test_event_time) {
    static const char *ok[] = {
        "2026-11-26T21:00:00Z", "2026-11-26t21:00:00z",
        "2026-11-26T21:00:00.1Z", "2026-11-26T21:00:00.123456789+01:00",
        "2026-11-26T23:59:60-12:30", "0000-01-01T00:00:00+00:00"
    };
    static const char *bad[] = {
        "yesterday", "2026-11-26", "2026-11-26T21:00:00",
        "2026-11-26 21:00:00Z", "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z", "2026-11-32T00:00:00Z",
        "2026-11-26T24:00:00Z", "2026-11-26T21:60:00Z",
        "2026-11-26T21:00:61Z", "2026-11-26T21:00:00.Z",
        "2026-11-26T21:00:00+0100", "2026-11-26T21:00:00+01:00Z",
        "2026-11-26T21:00:00Zz", "2026-1-26T21:00:00Z",
        "2026-11-26T21:00:00+24:00", "+026-11-26T21:00:00Z"
    };
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assertOk(parseGood("ce_time", ok[i], 0));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assertMalformed(parseGood("ce_time", bad[i], 0),
                        "malformed_event: ce_time is not an RFC 3339 time");
}
END_TEST

START_TEST(test_event_err_buffer) {
    char small[20];

    ck_assert_int_eq(eventParse(&ev, fields, lens, 0, v1, 1, small,
                                sizeof(small)), EVENT_MALFORMED);
    ck_assert_str_eq(small, "malformed_event: mi");
    ck_assert_int_eq(eventParse(&ev, fields, lens, 0, v1, 1, NULL, 0),
                     EVENT_MALFORMED);
}
END_TEST

static Suite *eventSuite(void) {
    Suite *s = suite_create("event");
    TCase *tc = tcase_create("events");

    tcase_add_test(tc, test_event_good);
    tcase_add_loop_test(tc, test_event_missing, 0,
                        sizeof(required) / sizeof(required[0]));
    tcase_add_test(tc, test_event_empty);
    tcase_add_test(tc, test_event_duplicate);
    tcase_add_test(tc, test_event_odd);
    tcase_add_test(tc, test_event_specversion);
    tcase_add_test(tc, test_event_schemaversion);
    tcase_add_test(tc, test_event_version_major);
    tcase_add_test(tc, test_event_data);
    tcase_add_test(tc, test_event_depth);
    tcase_add_test(tc, test_event_bytes);
    tcase_add_test(tc, test_event_time);
    tcase_add_test(tc, test_event_err_buffer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(eventSuite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
