/* Unit tests of retry.c: bounds, growth, cap, overflow, determinism. */

#include "retry.h"

#include <check.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

/* splitmix64: a fixed, seedable stand-in for the worker's random source. */
static uint64_t nextRandom(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Asserts that the largest delay retryDelay() can give for 'attempt' is
 * exactly 'expect': the random value 'expect' gives 'expect' (so the range
 * reaches it) and 'expect' + 1 gives 0 (so the range ends there). */
static void assertCeiling(int attempt, long long base, long long cap,
                          long long expect) {
    ck_assert_int_eq(retryDelay(attempt, base, cap, (uint64_t)expect),
                     expect);
    ck_assert_int_eq(retryDelay(attempt, base, cap, (uint64_t)expect + 1), 0);
}

START_TEST(test_growth_and_cap) {
    /* 200ms doubling: 200, 400, ..., 25600, then the 30s cap */
    long long expect = 200;
    int attempt;

    for (attempt = 1; attempt <= 8; attempt++, expect *= 2)
        assertCeiling(attempt, 200, 30000, expect);
    for (attempt = 9; attempt <= 70; attempt++)
        assertCeiling(attempt, 200, 30000, 30000);

    /* a cap equal to the base: no growth at all */
    for (attempt = 1; attempt <= 70; attempt++) {
        assertCeiling(attempt, 1, 1, 1);
        assertCeiling(attempt, 5000, 5000, 5000);
    }

    /* a cap that is not a power-of-two multiple of the base */
    assertCeiling(1, 300, 1000, 300);
    assertCeiling(2, 300, 1000, 600);
    assertCeiling(3, 300, 1000, 1000);
}
END_TEST

START_TEST(test_bounds) {
    uint64_t state = 1;
    int attempt, i;

    for (attempt = 1; attempt <= 20; attempt++) {
        long long ceiling = 200LL << (attempt - 1);

        if (ceiling > 30000) ceiling = 30000;
        ck_assert_int_eq(retryDelay(attempt, 200, 30000, 0), 0);
        for (i = 0; i < 10000; i++) {
            long long d = retryDelay(attempt, 200, 30000, nextRandom(&state));

            ck_assert_int_ge(d, 0);
            ck_assert_int_le(d, ceiling);
        }
    }
}
END_TEST

START_TEST(test_overflow) {
    static const int attempts[] = {62, 63, 64, 65, 100, 1000, INT_MAX};
    size_t i;

    for (i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
        int a = attempts[i];

        assertCeiling(a, 200, 30000, 30000);
        assertCeiling(a, 1, LLONG_MAX, a >= 64 ? LLONG_MAX : 1LL << (a - 1));
        ck_assert_int_le(retryDelay(a, 200, 30000, UINT64_MAX), 30000);
        ck_assert_int_ge(retryDelay(a, 1, LLONG_MAX, UINT64_MAX), 0);
    }

    /* the doubling would pass LLONG_MAX at once */
    assertCeiling(1, 1LL << 62, LLONG_MAX, 1LL << 62);
    assertCeiling(2, 1LL << 62, LLONG_MAX, LLONG_MAX);
    assertCeiling(2, LLONG_MAX, LLONG_MAX, LLONG_MAX);
}
END_TEST

START_TEST(test_determinism) {
    uint64_t s1 = 42, s2 = 42;
    int attempt;

    /* fixed random values give fixed delays: value % (ceiling + 1) */
    ck_assert_int_eq(retryDelay(1, 200, 30000, 12345), 12345 % 201);
    ck_assert_int_eq(retryDelay(3, 200, 30000, 1000), 1000 % 801);
    ck_assert_int_eq(retryDelay(20, 200, 30000, UINT64_MAX),
                     (long long)(UINT64_MAX % 30001));

    /* one seed, one schedule */
    for (attempt = 1; attempt <= 100; attempt++)
        ck_assert_int_eq(retryDelay(attempt, 200, 30000, nextRandom(&s1)),
                         retryDelay(attempt, 200, 30000, nextRandom(&s2)));
}
END_TEST

START_TEST(test_full_jitter) {
    uint64_t state = 7;
    int seen[3] = {0, 0, 0}, i;
    double sum = 0;

    /* every value of a small range comes up */
    for (i = 0; i < 300; i++) seen[retryDelay(2, 1, 3, nextRandom(&state))]++;
    ck_assert_int_gt(seen[0], 0);
    ck_assert_int_gt(seen[1], 0);
    ck_assert_int_gt(seen[2], 0);

    /* uniform over [0, 30000]: the mean is half the ceiling, within 1% */
    for (i = 0; i < 100000; i++)
        sum += (double)retryDelay(12, 200, 30000, nextRandom(&state));
    ck_assert_double_eq_tol(sum / 100000, 15000, 150);
}
END_TEST

START_TEST(test_invalid) {
    ck_assert_int_eq(retryDelay(0, 200, 30000, 1), -1);
    ck_assert_int_eq(retryDelay(-1, 200, 30000, 1), -1);
    ck_assert_int_eq(retryDelay(INT_MIN, 200, 30000, 1), -1);
    ck_assert_int_eq(retryDelay(1, 0, 30000, 1), -1);
    ck_assert_int_eq(retryDelay(1, -200, 30000, 1), -1);
    ck_assert_int_eq(retryDelay(1, 200, 199, 1), -1);
}
END_TEST

START_TEST(test_dead_letter) {
    int attempts;

    for (attempts = 1; attempts < 5; attempts++)
        ck_assert_int_eq(retryShouldDeadLetter(attempts, 5), 0);
    ck_assert_int_eq(retryShouldDeadLetter(5, 5), 1);
    ck_assert_int_eq(retryShouldDeadLetter(6, 5), 1);

    /* max-attempts 1: the first failure is the last */
    ck_assert_int_eq(retryShouldDeadLetter(1, 1), 1);
}
END_TEST

/* The brief's table: 2xx done; 408, 429, 5xx and no response retried;
 * everything else (other 4xx, 3xx: no redirect is followed, 1xx) dead. */
START_TEST(test_verdict) {
    static const struct {
        int responded, status;
        retryVerdict verdict;
    } cases[] = {
        {1, 200, VERDICT_DONE}, {1, 201, VERDICT_DONE},
        {1, 204, VERDICT_DONE}, {1, 299, VERDICT_DONE},
        {1, 408, VERDICT_RETRY}, {1, 429, VERDICT_RETRY},
        {1, 500, VERDICT_RETRY}, {1, 503, VERDICT_RETRY},
        {1, 599, VERDICT_RETRY},
        {1, 400, VERDICT_DEAD}, {1, 401, VERDICT_DEAD},
        {1, 404, VERDICT_DEAD}, {1, 409, VERDICT_DEAD},
        {1, 422, VERDICT_DEAD}, {1, 499, VERDICT_DEAD},
        {1, 301, VERDICT_DEAD}, {1, 304, VERDICT_DEAD},
        {1, 100, VERDICT_DEAD}, {1, 600, VERDICT_DEAD},
        {0, 0, VERDICT_RETRY}
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(retryVerdictFor(cases[i].responded, cases[i].status) ==
                          cases[i].verdict, "status %d", cases[i].status);
}
END_TEST

static Suite *retrySuite(void) {
    Suite *s = suite_create("retry");
    TCase *tc = tcase_create("retry");

    tcase_add_test(tc, test_growth_and_cap);
    tcase_add_test(tc, test_bounds);
    tcase_add_test(tc, test_overflow);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_full_jitter);
    tcase_add_test(tc, test_invalid);
    tcase_add_test(tc, test_dead_letter);
    tcase_add_test(tc, test_verdict);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(retrySuite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
