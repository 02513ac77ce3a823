/* checkout-worker handler replies: what a 2xx reply asks the worker to do.
 *
 * A reply whose Content-Type is application/json (or any +json type) and
 * whose body is a JSON object may carry "checkoutStatus", "orderId" and
 * "emit" (docs/contract.md, "Delivery"). Anything else in a 2xx reply
 * (another content type, an empty body, invalid JSON, a JSON value that is
 * not an object, unknown members) asks for nothing: the delivery is done.
 * An object whose known members have the wrong type or value is a bad reply:
 * the event goes to the dead-letter stream with the reason.
 *
 * Ownership: replyParse() fills a handlerReply the caller releases with
 * replyFree(); every string in it is its own. */

#ifndef CHECKOUT_WORKER_REPLY_H
#define CHECKOUT_WORKER_REPLY_H

#include <stddef.h>

#define REPLY_OK 0
#define REPLY_BAD 1     /* err: "bad_reply: emit[1].type is not a string" */

#define REPLY_MAX_EMIT 16       /* events one reply may emit */
#define REPLY_MAX_TEXT 128      /* bytes of orderId and of an emit's type */
#define REPLY_MAX_DEPTH 64      /* nesting of the reply's body */

/* One event to append to the stream. */
typedef struct replyEmit {
    char *type;             /* non-empty, printable ASCII, REPLY_MAX_TEXT */
    char *data;             /* compact JSON text of "data" (default "{}") */
    char *schemaversion;    /* "N" or "N.M"; NULL: "1" */
} replyEmit;

typedef struct handlerReply {
    char *checkout_status;  /* confirmed, declined, requires_action,
                             * pending_review or failed; NULL if absent */
    char *order_id;         /* printable ASCII, REPLY_MAX_TEXT; NULL if
                             * absent */
    replyEmit *emit;        /* NULL when nemit is 0 */
    int nemit;              /* at most REPLY_MAX_EMIT */
} handlerReply;

int replyParse(handlerReply *r, const char *content_type, const char *body,
               size_t len, char *err, size_t errlen);
void replyFree(handlerReply *r);

#endif
