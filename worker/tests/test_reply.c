/* Unit tests of reply.c: what a handler's 2xx reply asks for, every
 * error text exactly. */

#include "reply.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[512];

static handlerReply reply;

static int parseReply(const char *ct, const char *body) {
    memset(err, 'x', sizeof(err));
    return replyParse(&reply, ct, body, strlen(body), err, sizeof(err));
}

/* Asserts that the reply is fine and asks for nothing. */
static void assertNothing(int rc) {
    ck_assert_msg(rc == REPLY_OK, "rc %d: %s", rc, err);
    ck_assert_str_eq(err, "");
    ck_assert_ptr_null(reply.checkout_status);
    ck_assert_ptr_null(reply.order_id);
    ck_assert_ptr_null(reply.emit);
    ck_assert_int_eq(reply.nemit, 0);
    replyFree(&reply);
}

static void assertBad(int rc, const char *msg) {
    ck_assert_int_eq(rc, REPLY_BAD);
    ck_assert_str_eq(err, msg);
    ck_assert_ptr_null(reply.checkout_status);
    ck_assert_ptr_null(reply.order_id);
    ck_assert_ptr_null(reply.emit);
    ck_assert_int_eq(reply.nemit, 0);
    replyFree(&reply);
}

static void assertReplyOk(int rc) {
    ck_assert_msg(rc == REPLY_OK, "rc %d: %s", rc, err);
    ck_assert_str_eq(err, "");
}

#define JSON "application/json"

START_TEST(test_reply_ignored) {
    static const char *body = "{\"checkoutStatus\":\"confirmed\"}";
    static const char *notJson[] = {
        NULL, "text/plain", "text/json", "application/jsonx",
        "application/json-seq", "+json", "application/xml", ""
    };
    static const char *notObject[] = {
        "[]", "[{\"checkoutStatus\":\"confirmed\"}]", "\"ok\"", "42", "null",
        "true", "  ", "{", "{\"orderId\":5", "{\"orderId\":5}}", "{} {}",
        "{\"a\":1,}", "\"\xff\"", "{\"orderId\":\"\xc3\"}"
    };
    size_t i;

    for (i = 0; i < sizeof(notJson) / sizeof(notJson[0]); i++)
        assertNothing(parseReply(notJson[i], body));
    for (i = 0; i < sizeof(notObject) / sizeof(notObject[0]); i++)
        assertNothing(parseReply(JSON, notObject[i]));
    assertNothing(parseReply(JSON, ""));
    assertNothing(parseReply(JSON, "{}"));
    assertNothing(replyParse(&reply, JSON, "{}\0{", 4, err, sizeof(err)));
    assertNothing(parseReply(JSON, "{\"status\":\"confirmed\",\"emit\":null"
                             ",\"orderId\":1"));     /* bad, then cut */
    assertNothing(parseReply(JSON, "{\"CheckoutStatus\":1,\"order_id\":2,"
                             "\"emits\":3}"));
}
END_TEST

START_TEST(test_reply_content_types) {
    static const char *json[] = {
        "application/json", "application/json; charset=utf-8",
        "APPLICATION/JSON", " application/json ;x=y",
        "application/problem+json", "application/vnd.shop.v1+json; q=1"
    };
    size_t i;

    for (i = 0; i < sizeof(json) / sizeof(json[0]); i++) {
        assertReplyOk(parseReply(json[i], "{\"orderId\":\"o1\"}"));
        ck_assert_str_eq(reply.order_id, "o1");
        replyFree(&reply);
    }
}
END_TEST

START_TEST(test_reply_status) {
    static const char *words[] = {
        "confirmed", "declined", "requires_action", "pending_review",
        "failed"
    };
    static const char *notWord[] = {
        "\"Confirmed\"", "\"shipped\"", "\"\"", "\"confirmed \"",
        "\"confirmed\\u0000\""
    };
    static const char *notString[] = {
        "1", "null", "true", "[\"confirmed\"]", "{\"a\":\"confirmed\"}"
    };
    char body[128];
    size_t i;

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        snprintf(body, sizeof(body), "{\"checkoutStatus\":\"%s\"}", words[i]);
        assertReplyOk(parseReply(JSON, body));
        ck_assert_str_eq(reply.checkout_status, words[i]);
        ck_assert_ptr_null(reply.order_id);
        ck_assert_int_eq(reply.nemit, 0);
        replyFree(&reply);
    }
    for (i = 0; i < sizeof(notWord) / sizeof(notWord[0]); i++) {
        snprintf(body, sizeof(body), "{\"checkoutStatus\":%s}", notWord[i]);
        assertBad(parseReply(JSON, body),
                  "bad_reply: checkoutStatus is not one of confirmed, "
                  "declined, requires_action, pending_review, failed");
    }
    for (i = 0; i < sizeof(notString) / sizeof(notString[0]); i++) {
        snprintf(body, sizeof(body), "{\"checkoutStatus\":%s}", notString[i]);
        assertBad(parseReply(JSON, body),
                  "bad_reply: checkoutStatus is not a string");
    }
}
END_TEST

START_TEST(test_reply_order) {
    char body[512];

    assertReplyOk(parseReply(JSON, "{\"orderId\":\"ord 7/x\","
                             "\"checkoutStatus\":\"confirmed\"}"));
    ck_assert_str_eq(reply.order_id, "ord 7/x");
    ck_assert_str_eq(reply.checkout_status, "confirmed");
    replyFree(&reply);

    assertBad(parseReply(JSON, "{\"orderId\":7}"),
              "bad_reply: orderId is not a string");
    assertBad(parseReply(JSON, "{\"orderId\":null}"),
              "bad_reply: orderId is not a string");
    assertBad(parseReply(JSON, "{\"orderId\":\"\"}"),
              "bad_reply: orderId must be 1 to 128 printable ASCII "
              "characters");
    assertBad(parseReply(JSON, "{\"orderId\":\"a\\nb\"}"),
              "bad_reply: orderId must be 1 to 128 printable ASCII "
              "characters");
    assertBad(parseReply(JSON, "{\"orderId\":\"caf\\u00e9\"}"),
              "bad_reply: orderId must be 1 to 128 printable ASCII "
              "characters");

    snprintf(body, sizeof(body), "{\"orderId\":\"%0128d\"}", 0);
    assertReplyOk(parseReply(JSON, body));
    ck_assert_uint_eq(strlen(reply.order_id), 128);
    replyFree(&reply);
    snprintf(body, sizeof(body), "{\"orderId\":\"%0129d\"}", 0);
    assertBad(parseReply(JSON, body),
              "bad_reply: orderId must be 1 to 128 printable ASCII "
              "characters");

    /* the first wrong member is the one reported; duplicates are wrong */
    assertBad(parseReply(JSON, "{\"orderId\":1,\"checkoutStatus\":2}"),
              "bad_reply: orderId is not a string");
    assertBad(parseReply(JSON, "{\"orderId\":\"a\",\"orderId\":\"b\"}"),
              "bad_reply: duplicate orderId");
    assertBad(parseReply(JSON, "{\"emit\":[],\"emit\":[]}"),
              "bad_reply: duplicate emit");
}
END_TEST

START_TEST(test_reply_emit) {
    assertReplyOk(parseReply(JSON,
        "{\"checkoutStatus\":\"confirmed\", \"emit\": [\n"
        "  {\"type\": \"ReceiptSent\", \"data\": {\"a\": [1, 2.50, -0e+1, "
        "\"x y\"], \"b\": null, \"c\": {}, \"d\": true}},\n"
        "  {\"type\": \"Audit\"},\n"
        "  {\"schemaversion\": \"2.1\", \"type\": \"V2\", \"extra\": "
        "{\"type\": 5}, \"data\": \"caf\\u00e9\\u0000\\\"\\n/\"},\n"
        "  {\"data\": 12345678901234567890, \"type\": \"Big\"},\n"
        "  {\"type\": \"Nested\", \"data\": [[{\"type\": 1}], {}]}\n"
        "], \"unknown\": [1, {\"emit\": 5}]}"));
    ck_assert_str_eq(reply.checkout_status, "confirmed");
    ck_assert_ptr_null(reply.order_id);
    ck_assert_int_eq(reply.nemit, 5);
    ck_assert_str_eq(reply.emit[0].type, "ReceiptSent");
    ck_assert_str_eq(reply.emit[0].data,
                     "{\"a\":[1,2.50,-0e+1,\"x y\"],\"b\":null,\"c\":{},"
                     "\"d\":true}");
    ck_assert_ptr_null(reply.emit[0].schemaversion);
    ck_assert_str_eq(reply.emit[1].type, "Audit");
    ck_assert_str_eq(reply.emit[1].data, "{}");
    ck_assert_ptr_null(reply.emit[1].schemaversion);
    ck_assert_str_eq(reply.emit[2].type, "V2");
    ck_assert_str_eq(reply.emit[2].schemaversion, "2.1");
    ck_assert_str_eq(reply.emit[2].data,
                     "\"caf\xc3\xa9\\u0000\\\"\\n/\"");
    ck_assert_str_eq(reply.emit[3].data, "12345678901234567890");
    ck_assert_str_eq(reply.emit[4].data, "[[{\"type\":1}],{}]");
    replyFree(&reply);

    /* an empty emit array, and one emit with null data */
    assertReplyOk(parseReply(JSON, "{\"emit\":[]}"));
    ck_assert_int_eq(reply.nemit, 0);
    replyFree(&reply);
    assertReplyOk(parseReply(JSON, "{\"emit\":[{\"type\":\"T\","
                             "\"data\":null}]}"));
    ck_assert_int_eq(reply.nemit, 1);
    ck_assert_str_eq(reply.emit[0].data, "null");
    replyFree(&reply);
}
END_TEST

START_TEST(test_reply_emit_bad) {
    static const struct {
        const char *body;
        const char *err;
    } bad[] = {
        {"{\"emit\":{}}", "bad_reply: emit is not an array"},
        {"{\"emit\":\"x\"}", "bad_reply: emit is not an array"},
        {"{\"emit\":null}", "bad_reply: emit is not an array"},
        {"{\"emit\":[5]}", "bad_reply: emit[0] is not an object"},
        {"{\"emit\":[{\"type\":\"A\"},[]]}",
         "bad_reply: emit[1] is not an object"},
        {"{\"emit\":[{}]}", "bad_reply: emit[0] has no type"},
        {"{\"emit\":[{\"type\":\"A\"},{\"data\":{}}]}",
         "bad_reply: emit[1] has no type"},
        {"{\"emit\":[{\"type\":5}]}",
         "bad_reply: emit[0].type is not a string"},
        {"{\"emit\":[{\"type\":\"A\"},{\"type\":{\"x\":1}}]}",
         "bad_reply: emit[1].type is not a string"},
        {"{\"emit\":[{\"type\":\"\"}]}",
         "bad_reply: emit[0].type must be 1 to 128 printable ASCII "
         "characters"},
        {"{\"emit\":[{\"type\":\"A\\r\\nB\"}]}",
         "bad_reply: emit[0].type must be 1 to 128 printable ASCII "
         "characters"},
        {"{\"emit\":[{\"type\":\"A\",\"schemaversion\":1}]}",
         "bad_reply: emit[0].schemaversion is not a string"},
        {"{\"emit\":[{\"type\":\"A\",\"schemaversion\":\"x\"}]}",
         "bad_reply: emit[0].schemaversion must be N or N.M"},
        {"{\"emit\":[{\"type\":\"A\",\"schemaversion\":\"1.\"}]}",
         "bad_reply: emit[0].schemaversion must be N or N.M"},
        {"{\"emit\":[{\"type\":\"A\",\"schemaversion\":\"\"}]}",
         "bad_reply: emit[0].schemaversion must be N or N.M"},
        {"{\"emit\":[{\"type\":\"A\",\"type\":\"B\"}]}",
         "bad_reply: duplicate emit[0].type"},
        {"{\"emit\":[{\"type\":\"A\",\"data\":1,\"data\":2}]}",
         "bad_reply: duplicate emit[0].data"},
        {"{\"checkoutStatus\":\"confirmed\",\"emit\":[{\"type\":\"A\"},5],"
         "\"orderId\":\"o\"}", "bad_reply: emit[1] is not an object"},
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assertBad(parseReply(JSON, bad[i].body), bad[i].err);
}
END_TEST

START_TEST(test_reply_emit_count) {
    char body[2048];
    size_t n;
    int i, count;

    for (count = REPLY_MAX_EMIT; count <= REPLY_MAX_EMIT + 1; count++) {
        n = (size_t)snprintf(body, sizeof(body), "{\"emit\":[");
        for (i = 0; i < count; i++)
            n += (size_t)snprintf(body + n, sizeof(body) - n,
                                  "%s{\"type\":\"T%d\",\"data\":[%d]}",
                                  i ? "," : "", i, i);
        snprintf(body + n, sizeof(body) - n, "]}");
        if (count == REPLY_MAX_EMIT) {
            assertReplyOk(parseReply(JSON, body));
            ck_assert_int_eq(reply.nemit, 16);
            ck_assert_str_eq(reply.emit[15].type, "T15");
            ck_assert_str_eq(reply.emit[15].data, "[15]");
            replyFree(&reply);
        } else {
            assertBad(parseReply(JSON, body),
                      "bad_reply: emit has more than 16 entries");
        }
    }
}
END_TEST

START_TEST(test_reply_depth) {
    char body[256];
    int depth, i, n;

    /* the reply object is level 1: 63 arrays inside it are level 64 */
    for (depth = REPLY_MAX_DEPTH - 1; depth <= REPLY_MAX_DEPTH; depth++) {
        n = snprintf(body, sizeof(body), "{\"x\":");
        for (i = 0; i < depth; i++) body[n++] = '[';
        for (i = 0; i < depth; i++) body[n++] = ']';
        snprintf(body + n, sizeof(body) - (size_t)n, "}");
        if (depth < REPLY_MAX_DEPTH)
            assertNothing(parseReply(JSON, body));
        else
            assertBad(parseReply(JSON, body),
                      "bad_reply: nested deeper than 64 levels");
    }
}
END_TEST

START_TEST(test_reply_err_buffer) {
    char small[16];

    ck_assert_int_eq(replyParse(&reply, JSON, "{\"orderId\":1}", 13, small,
                                sizeof(small)), REPLY_BAD);
    ck_assert_str_eq(small, "bad_reply: orde");
    ck_assert_int_eq(replyParse(&reply, JSON, "{\"orderId\":1}", 13, NULL,
                                0), REPLY_BAD);
    ck_assert_int_eq(replyParse(&reply, JSON, "{\"orderId\":1}", 13, small,
                                5), REPLY_BAD);
    ck_assert_str_eq(small, "bad_");
    replyFree(&reply);
}
END_TEST

static Suite *replySuite(void) {
    Suite *s = suite_create("reply");
    TCase *tc = tcase_create("replies");

    tcase_add_test(tc, test_reply_ignored);
    tcase_add_test(tc, test_reply_content_types);
    tcase_add_test(tc, test_reply_status);
    tcase_add_test(tc, test_reply_order);
    tcase_add_test(tc, test_reply_emit);
    tcase_add_test(tc, test_reply_emit_bad);
    tcase_add_test(tc, test_reply_emit_count);
    tcase_add_test(tc, test_reply_depth);
    tcase_add_test(tc, test_reply_err_buffer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(replySuite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
