/* checkout-worker deliveries: HTTP POSTs run concurrently on the worker's
 * libevent loop, with libcurl's multi socket interface.
 *
 * deliverStart() only queues a request: its callback always runs later,
 * from the event loop, once a response arrived or the delivery failed.
 * Connections to a handler are kept open and reused between deliveries. */

#ifndef CHECKOUT_WORKER_DELIVER_H
#define CHECKOUT_WORKER_DELIVER_H

#include <stddef.h>

struct event_base;

#define DELIVER_MAX_BODY (1024 * 1024)  /* bytes of a reply body kept */

typedef struct deliverer deliverer;

typedef enum deliverError {
    DELIVER_OK = 0,         /* a response arrived (any status) */
    DELIVER_TIMEOUT,        /* no complete response within timeout_ms */
    DELIVER_CONNECT,        /* could not connect: refused, unreachable, DNS */
    DELIVER_IO              /* sent, then reset/closed/garbled response */
} deliverError;

/* What to send. deliverStart() copies all of it. */
typedef struct deliveryRequest {
    const char *url;
    long long timeout_ms;           /* the whole delivery; at least 1 */
    const char *body;
    size_t bodylen;
    const char *const *headers;     /* "Name: value" lines, NULL-terminated;
                                     * includes Content-Type */
} deliveryRequest;

/* How it went. Valid only during the callback. */
typedef struct deliveryResult {
    deliverError error;
    const char *error_text;     /* curl's error text or "timeout after N
                                 * ms"; "" when DELIVER_OK */
    int status;                 /* HTTP status, 0 when none */
    const char *content_type;   /* of the reply, NULL if none */
    const char *body;           /* reply body, NUL-terminated (it may hold
                                 * NUL bytes too); "" when none */
    size_t bodylen;             /* at most DELIVER_MAX_BODY */
    int truncated;              /* the body was longer */
    long long duration_ms;      /* from deliverStart() */
} deliveryResult;

typedef void deliverCallback(const deliveryResult *r, void *privdata);

deliverer *deliverCreate(struct event_base *base, const char *user_agent,
                         char *err, size_t errlen);
int deliverStart(deliverer *d, const deliveryRequest *req,
                 deliverCallback *cb, void *privdata);
int deliverInFlight(const deliverer *d);
void deliverFree(deliverer *d);

#endif
