/* checkout-worker retry policy: how long to wait before the next delivery of
 * an event whose delivery failed, and when to stop trying.
 *
 * Both functions are pure: the random bits retryDelay() needs come from the
 * caller, so that tests can fix them. */

#ifndef CHECKOUT_WORKER_RETRY_H
#define CHECKOUT_WORKER_RETRY_H

#include <stdint.h>

long long retryDelay(int attempt, long long base_ms, long long cap_ms,
                     uint64_t rnd);
int retryShouldDeadLetter(int attempts, int max_attempts);

/* What a delivery's result means for its event. */
typedef enum retryVerdict {
    VERDICT_DONE,       /* 2xx */
    VERDICT_RETRY,      /* worth another try: 408, 429, 5xx, no response */
    VERDICT_DEAD        /* another try cannot help: 1xx, 3xx, other 4xx */
} retryVerdict;

/* 'responded' is 0 when no response came (timeout, connection refused or
 * reset), and 'status' the HTTP status otherwise. */
retryVerdict retryVerdictFor(int responded, int status);

#endif
