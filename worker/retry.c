/* checkout-worker retry policy: exponential backoff with full jitter, as in
 * "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015): the delay
 * before retry n is drawn uniformly from [0, min(cap, base * 2^(n-1))].
 * Full jitter spreads the retries of events that failed together (a
 * receiver that went down) instead of sending them back in waves. */

#include "retry.h"

/* Returns the delay in milliseconds before the next delivery, after the
 * failed delivery number 'attempt' (1 for the first delivery): a value in
 * [0, min(cap_ms, base_ms * 2^(attempt-1))] picked by 'rnd', which the
 * caller draws uniformly from all 64-bit values. The same arguments always
 * give the same delay. Any 'attempt' works: the doubling stops at 'cap_ms'
 * without overflow. Returns -1 when the arguments make no policy: 'attempt'
 * below 1, 'base_ms' below 1, or 'cap_ms' below 'base_ms'. */
long long retryDelay(int attempt, long long base_ms, long long cap_ms,
                     uint64_t rnd) {
    long long ceiling = cap_ms;
    int shift;

    if (attempt < 1 || base_ms < 1 || cap_ms < base_ms) return -1;

    /* base << shift stays within cap (so within long long) exactly when base
     * <= cap >> shift; a shift of 63 or more always reaches the cap. */
    shift = attempt - 1;
    if (shift < 63 && base_ms <= (cap_ms >> shift))
        ceiling = base_ms << shift;

    /* ceiling + 1 <= 2^63 fits in uint64_t. The modulo bias is below
     * ceiling / 2^64, far under anything a retry schedule can show. */
    return (long long)(rnd % ((uint64_t)ceiling + 1));
}

/* Returns 1 when an event whose delivery failed 'attempts' times in all (the
 * first delivery included) has had its 'max_attempts' and goes to the
 * dead-letter stream, 0 when it is retried. */
int retryShouldDeadLetter(int attempts, int max_attempts) {
    return attempts >= max_attempts;
}

retryVerdict retryVerdictFor(int responded, int status) {
    if (!responded) return VERDICT_RETRY;
    if (status >= 200 && status <= 299) return VERDICT_DONE;
    if (status == 408 || status == 429 || (status >= 500 && status <= 599))
        return VERDICT_RETRY;
    return VERDICT_DEAD;
}
