/* checkout-worker deliveries: libcurl's multi socket interface on a libevent
 * loop.
 *
 * curl tells us, through sockWatch() and timerSet(), which sockets to watch
 * and when its next timeout is due; libevent tells curl, through
 * curl_multi_socket_action(), which socket became ready or that the timeout
 * came. After each such call the finished transfers are collected and their
 * callbacks run. So every callback runs from the event loop, and
 * deliverStart() itself only adds a handle, which arms the timer.
 *
 * Every delivery and every socket watch is on a list of the deliverer's, so
 * that deliverFree() releases all of them whatever state curl is in. */

#define _POSIX_C_SOURCE 200809L     /* strdup */

#include "deliver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "util.h"

/* One delivery in flight. */
typedef struct delivery {
    deliverer *d;
    CURL *easy;
    struct curl_slist *headers;
    deliverCallback *cb;
    void *privdata;
    long long timeout_ms;
    long long started_ms;
    char *body;                 /* the reply body so far, NUL-terminated */
    size_t bodylen, bodycap;
    int truncated;
    char errbuf[CURL_ERROR_SIZE];
    struct delivery *prev, *next;
} delivery;

/* A socket curl asked us to watch. */
typedef struct watch {
    struct event *ev;
    struct watch *prev, *next;
} watch;

struct deliverer {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;        /* curl's next timeout */
    char *user_agent;
    delivery *deliveries;       /* in flight */
    watch *watches;
    int inflight;
};

/* Frees a delivery already off the multi handle and off the list. */
static void deliveryFree(delivery *x) {
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
    free(x);
}

/* Takes a delivery off the multi handle and off the list. */
static void deliveryDetach(delivery *x) {
    deliverer *d = x->d;

    curl_multi_remove_handle(d->multi, x->easy);
    if (x->prev) x->prev->next = x->next;
    else d->deliveries = x->next;
    if (x->next) x->next->prev = x->prev;
    d->inflight--;
}

static void watchFree(deliverer *d, watch *w) {
    event_free(w->ev);
    if (w->prev) w->prev->next = w->next;
    else d->watches = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w);
}

static deliverError classify(CURLcode code) {
    switch (code) {
    case CURLE_OK:
        return DELIVER_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return DELIVER_TIMEOUT;
    /* Nothing was sent: the request never reached a handler. (Not
     * CURLE_UNSUPPORTED_PROTOCOL: it also stands for a reply that is not
     * HTTP.) */
    case CURLE_URL_MALFORMAT:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return DELIVER_CONNECT;
    default:
        return DELIVER_IO;
    }
}

/* Ends a finished transfer: runs its callback, then frees it. */
static void deliveryDone(delivery *x, CURLcode code) {
    deliveryResult r;
    char text[64];
    long status = 0;
    char *ct = NULL;

    deliveryDetach(x);
    memset(&r, 0, sizeof(r));
    r.error = classify(code);
    r.error_text = "";
    if (r.error == DELIVER_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
        r.status = (int)status;
        r.content_type = ct;
    } else if (r.error == DELIVER_TIMEOUT) {
        snprintf(text, sizeof(text), "timeout after %lld ms", x->timeout_ms);
        r.error_text = text;
    } else {
        r.error_text = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
    }
    r.body = x->body ? x->body : "";
    r.bodylen = x->bodylen;
    r.truncated = x->truncated;
    r.duration_ms = monotonicMs() - x->started_ms;
    x->cb(&r, x->privdata);
    deliveryFree(x);
}

/* Runs the callbacks of the transfers curl has finished. */
static void collectDone(deliverer *d) {
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
        delivery *x;
        CURLcode code;

        if (m->msg != CURLMSG_DONE) continue;
        /* 'm' is gone once the handle is removed: read it first. */
        code = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        deliveryDone(x, code);
    }
}

static void onSocket(evutil_socket_t fd, short what, void *arg) {
    deliverer *d = arg;
    int action = 0, running;

    if (what & EV_READ) action |= CURL_CSELECT_IN;
    if (what & EV_WRITE) action |= CURL_CSELECT_OUT;
    curl_multi_socket_action(d->multi, fd, action, &running);
    collectDone(d);
}

static void onTimer(evutil_socket_t fd, short what, void *arg) {
    deliverer *d = arg;
    int running;

    UNUSED(fd);
    UNUSED(what);
    curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collectDone(d);
}

/* CURLMOPT_SOCKETFUNCTION: watch 's' for what curl waits for, or stop. */
static int sockWatch(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp) {
    deliverer *d = userp;
    watch *w = socketp;
    short flags = EV_PERSIST;

    UNUSED(easy);
    if (what == CURL_POLL_REMOVE) {
        if (w != NULL) watchFree(d, w);
        return 0;
    }
    if (what & CURL_POLL_IN) flags |= EV_READ;
    if (what & CURL_POLL_OUT) flags |= EV_WRITE;

    if (w == NULL) {
        if ((w = calloc(1, sizeof(*w))) == NULL) return -1;
        if ((w->ev = event_new(d->base, s, flags, onSocket, d)) == NULL) {
            free(w);
            return -1;
        }
        w->next = d->watches;
        if (d->watches) d->watches->prev = w;
        d->watches = w;
        curl_multi_assign(d->multi, s, w);
    } else {
        event_del(w->ev);
        event_assign(w->ev, d->base, s, flags, onSocket, d);
    }
    return event_add(w->ev, NULL) == 0 ? 0 : -1;
}

/* CURLMOPT_TIMERFUNCTION: curl's next timeout is in 'timeout_ms' (0: at
 * once, on the next loop iteration), or none (-1). */
static int timerSet(CURLM *multi, long timeout_ms, void *userp) {
    deliverer *d = userp;
    struct timeval tv;

    UNUSED(multi);
    if (timeout_ms < 0) return evtimer_del(d->timer) == 0 ? 0 : -1;
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(d->timer, &tv) == 0 ? 0 : -1;
}

/* CURLOPT_WRITEFUNCTION: keeps the reply body up to DELIVER_MAX_BODY
 * bytes; the rest is read and dropped, so that the response completes. */
static size_t onBody(char *ptr, size_t size, size_t nmemb, void *userdata) {
    delivery *x = userdata;
    size_t n = size * nmemb, keep = n;

    if (keep > DELIVER_MAX_BODY - x->bodylen) {
        keep = DELIVER_MAX_BODY - x->bodylen;
        x->truncated = 1;
    }
    if (keep == 0) return n;
    if (x->bodylen + keep + 1 > x->bodycap) {
        size_t cap = x->bodycap ? x->bodycap * 2 : 4096;
        char *grown;

        while (cap < x->bodylen + keep + 1) cap *= 2;
        if (cap > DELIVER_MAX_BODY + 1) cap = DELIVER_MAX_BODY + 1;
        if ((grown = realloc(x->body, cap)) == NULL) return 0;
        x->body = grown;
        x->bodycap = cap;
    }
    memcpy(x->body + x->bodylen, ptr, keep);
    x->bodylen += keep;
    x->body[x->bodylen] = '\0';
    return n;
}

/* Creates a deliverer on 'base', sending 'user_agent' as User-Agent.
 * Returns it, or NULL with the reason in 'err'. */
deliverer *deliverCreate(struct event_base *base, const char *user_agent,
                         char *err, size_t errlen) {
    deliverer *d;
    CURLcode code;

    /* libcurl counts these calls: deliverFree() makes the matching
     * curl_global_cleanup(). */
    if ((code = curl_global_init(CURL_GLOBAL_DEFAULT)) != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init: %s",
                 curl_easy_strerror(code));
        return NULL;
    }
    if ((d = calloc(1, sizeof(*d))) == NULL) goto oom;
    d->base = base;
    if ((d->user_agent = strdup(user_agent)) == NULL ||
        (d->timer = evtimer_new(base, onTimer, d)) == NULL ||
        (d->multi = curl_multi_init()) == NULL)
        goto oom;
    if (curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, sockWatch) ||
        curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d) ||
        curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, timerSet) ||
        curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d)) {
        snprintf(err, errlen, "curl_multi_setopt failed");
        deliverFree(d);
        return NULL;
    }
    return d;

oom:
    snprintf(err, errlen, "out of memory");
    if (d != NULL) deliverFree(d);
    else curl_global_cleanup();
    return NULL;
}

/* Starts the delivery 'req'. Returns 0: 'cb' runs later from the event loop
 * with 'privdata', exactly once, unless deliverFree() comes first. Returns
 * -1 when it cannot start (no memory, timeout below 1 ms): 'cb' is never
 * called. */
int deliverStart(deliverer *d, const deliveryRequest *req,
                 deliverCallback *cb, void *privdata) {
    const char *const *h;
    struct curl_slist *more;
    delivery *x;
    CURL *e;

    if (req->timeout_ms < 1) return -1;
    if ((x = calloc(1, sizeof(*x))) == NULL) return -1;
    x->d = d;
    x->cb = cb;
    x->privdata = privdata;
    x->timeout_ms = req->timeout_ms;
    if ((x->easy = e = curl_easy_init()) == NULL) {
        free(x);
        return -1;
    }

    /* An empty Expect: drops curl's "Expect: 100-continue" on larger
     * bodies, which would wait for the handler's go-ahead. */
    for (h = req->headers; h != NULL && *h != NULL; h++) {
        if ((more = curl_slist_append(x->headers, *h)) == NULL) goto err;
        x->headers = more;
    }
    if ((more = curl_slist_append(x->headers, "Expect:")) == NULL) goto err;
    x->headers = more;

    /* Redirects are not followed (a 3xx is the handler's answer), the
     * environment's proxy settings are not used, and curl must not use
     * signals (SIGALRM for DNS timeouts) in a process with an event loop.
     * The body is set by size first, as it may hold NUL bytes. */
    if (curl_easy_setopt(e, CURLOPT_URL, req->url) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms) !=
            CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_USERAGENT, d->user_agent) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)req->bodylen) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS,
                         req->body ? req->body : "") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, onBody) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PRIVATE, x) != CURLE_OK)
        goto err;

    x->started_ms = monotonicMs();
    if (curl_multi_add_handle(d->multi, e) != CURLM_OK) goto err;
    x->next = d->deliveries;
    if (d->deliveries) d->deliveries->prev = x;
    d->deliveries = x;
    d->inflight++;
    return 0;

err:
    deliveryFree(x);
    return -1;
}

/* Deliveries started whose callback has not run yet. */
int deliverInFlight(const deliverer *d) {
    return d->inflight;
}

/* Aborts the deliveries in flight, without their callbacks, and frees
 * everything. Not to be called from a delivery callback. */
void deliverFree(deliverer *d) {
    if (d == NULL) return;
    while (d->deliveries != NULL) {
        delivery *x = d->deliveries;

        deliveryDetach(x);
        deliveryFree(x);
    }
    /* Closing the pooled connections may still call sockWatch(), which
     * needs the deliverer and its lists. */
    if (d->multi != NULL) curl_multi_cleanup(d->multi);
    while (d->watches != NULL) watchFree(d, d->watches);
    if (d->timer != NULL) event_free(d->timer);
    free(d->user_agent);
    free(d);
    curl_global_cleanup();
}
