/*
 * The contract between the nginx module and checkout-worker: the Redis
 * keys, streams and fields they share, the names of outcomes and task
 * states, the stream entry's CloudEvent fields, what a receiver gets and
 * may answer, the dead letter's trailer and the shapes of derived ids.
 * docs/contract.md says what each means, who writes it and who reads it.
 *
 * Plain C, string literals only: the module includes it through
 * ngx_module_incs, the worker with -I.  The Lua scripts
 * (ngx_checkout_module/lua/, worker/lua/) write the same names literally:
 * t/contract.t fails when a script writes a name this file does not
 * define, and t/030-end-to-end.t holds the two programs to each other.
 *
 * Lists are X-macros: CHECKOUT_STATE_FIELDS(X) calls X(name) once per
 * item, so each program builds its own table from the one list.
 */

#ifndef CHECKOUT_CONTRACT_H
#define CHECKOUT_CONTRACT_H


/* --- keys and streams -------------------------------------------------- */

/* the checkout's state hash: PREFIX <checkout id> */
#define CHECKOUT_STATE_KEY_PREFIX        "checkout:"

/* the idempotency record: PREFIX <location> ":" <Idempotency-Key> */
#define CHECKOUT_IDEMPOTENCY_KEY_PREFIX  "checkout:idem:"

/* the worker's retry schedule, a sorted set: PREFIX <group> */
#define CHECKOUT_RETRY_KEY_PREFIX        "checkout:worker:retry:"

/* the worker's done record: PREFIX <group> ":" <ce_id> */
#define CHECKOUT_DONE_KEY_PREFIX         "checkout:worker:done:"

#define CHECKOUT_STREAM_DEFAULT          "checkout:events"
#define CHECKOUT_DEAD_LETTER_DEFAULT     "checkout:events:dlq"


/* --- checkout ids ------------------------------------------------------ */

/* "chk_" and 22 characters of [0-9A-Za-z]: about 131 random bits */
#define CHECKOUT_ID_PREFIX               "chk_"
#define CHECKOUT_ID_CHARS                22
#define CHECKOUT_ID_LEN                                                       \
    (sizeof(CHECKOUT_ID_PREFIX) - 1 + CHECKOUT_ID_CHARS)


/* --- outcomes ---------------------------------------------------------- */

/*
 * What the module tells a client, and the checkout's "status" field; a
 * receiver's "checkoutStatus" must be one of them.  invalid_request is a
 * reply only: a request refused as bad input starts no checkout.
 */
#define CHECKOUT_OUTCOME_CONFIRMED       "confirmed"
#define CHECKOUT_OUTCOME_DECLINED        "declined"
#define CHECKOUT_OUTCOME_REQUIRES_ACTION "requires_action"
#define CHECKOUT_OUTCOME_PENDING_REVIEW  "pending_review"
#define CHECKOUT_OUTCOME_FAILED          "failed"
#define CHECKOUT_INVALID_REQUEST         "invalid_request"

/* X(NAME, outcome) */
#define CHECKOUT_OUTCOMES(X)                                                  \
    X(CONFIRMED, CHECKOUT_OUTCOME_CONFIRMED)                                  \
    X(DECLINED, CHECKOUT_OUTCOME_DECLINED)                                    \
    X(REQUIRES_ACTION, CHECKOUT_OUTCOME_REQUIRES_ACTION)                      \
    X(PENDING_REVIEW, CHECKOUT_OUTCOME_PENDING_REVIEW)                        \
    X(FAILED, CHECKOUT_OUTCOME_FAILED)

/* the outcomes that publish an event: X(NAME, outcome, default ce_type) */
#define CHECKOUT_EVENTS(X)                                                    \
    X(CONFIRMED, CHECKOUT_OUTCOME_CONFIRMED, "OrderConfirmed")                \
    X(PENDING_REVIEW, CHECKOUT_OUTCOME_PENDING_REVIEW,                        \
      "CheckoutPendingReview")                                                \
    X(DECLINED, CHECKOUT_OUTCOME_DECLINED, "CheckoutDeclined")


/* --- the state hash: checkout:<id> ------------------------------------- */

/*
 * The checkout's own fields.  Every other field is a follow-up task, named
 * after its consumer group, so no group may take one of these names.
 * "eventId", written last by the module, marks the event as appended.
 */
#define CHECKOUT_STATE_STATUS            "status"
#define CHECKOUT_STATE_ORDER_ID          "orderId"
#define CHECKOUT_STATE_STEP              "step"
#define CHECKOUT_STATE_CREATED           "created"
#define CHECKOUT_STATE_UPDATED           "updated"
#define CHECKOUT_STATE_EVENT_ID          "eventId"

/* X(field) */
#define CHECKOUT_STATE_FIELDS(X)                                              \
    X(CHECKOUT_STATE_STATUS)                                                  \
    X(CHECKOUT_STATE_ORDER_ID)                                                \
    X(CHECKOUT_STATE_STEP)                                                    \
    X(CHECKOUT_STATE_CREATED)                                                 \
    X(CHECKOUT_STATE_UPDATED)                                                 \
    X(CHECKOUT_STATE_EVENT_ID)

/* a task field's values, as the worker moves the task on */
#define CHECKOUT_TASK_PENDING            "pending"
#define CHECKOUT_TASK_RETRYING           "retrying"
#define CHECKOUT_TASK_DONE               "done"
#define CHECKOUT_TASK_DEAD               "dead"


/* --- the idempotency record: checkout:idem:<location>:<key> ------------ */

#define CHECKOUT_IDEMPOTENCY_FINGERPRINT "fingerprint"
#define CHECKOUT_IDEMPOTENCY_STATE       "state"
#define CHECKOUT_IDEMPOTENCY_STATUS      "status"
#define CHECKOUT_IDEMPOTENCY_BODY        "body"
#define CHECKOUT_IDEMPOTENCY_LOCATION    "location"
#define CHECKOUT_IDEMPOTENCY_RETRY_AFTER "retryAfter"
#define CHECKOUT_IDEMPOTENCY_CHECKOUT_ID "checkoutId"

/* its "state", and the gate's other answers */
#define CHECKOUT_IDEMPOTENCY_RUNNING     "running"
#define CHECKOUT_IDEMPOTENCY_DONE        "done"
#define CHECKOUT_GATE_NEW                "new"
#define CHECKOUT_GATE_REUSED             "reused"
#define CHECKOUT_GATE_LATE               "late"


/* --- the stream entry: CloudEvents 1.0, binary mode -------------------- */

#define CHECKOUT_CE_SPECVERSION          "ce_specversion"
#define CHECKOUT_CE_ID                   "ce_id"
#define CHECKOUT_CE_TYPE                 "ce_type"
#define CHECKOUT_CE_SOURCE               "ce_source"
#define CHECKOUT_CE_TIME                 "ce_time"
#define CHECKOUT_CE_SUBJECT              "ce_subject"
#define CHECKOUT_CE_SCHEMAVERSION        "ce_schemaversion"
#define CHECKOUT_EVENT_CONTENT_TYPE      "content-type"
#define CHECKOUT_EVENT_DATA              "data"

/* a dead letter replayed for one group only: the group's name */
#define CHECKOUT_EVENT_REPLAY_GROUP      "replay_group"

#define CHECKOUT_CE_SPECVERSION_VALUE    "1.0"
#define CHECKOUT_EVENT_DATA_TYPE         "application/json"

/* the major version of "data" the module writes */
#define CHECKOUT_SCHEMA_VERSION          "1"

/* the module's "data": its own fields, "status" an outcome */
#define CHECKOUT_DATA_CHECKOUT_ID        "checkoutId"
#define CHECKOUT_DATA_STATUS             "status"
#define CHECKOUT_DATA_STEP               "step"
#define CHECKOUT_DATA_CART               "cart"
#define CHECKOUT_DATA_RESULTS            "results"


/* --- delivery: what a receiver gets and may answer --------------------- */

/*
 * The ce_ attributes as the worker's HTTP headers; content-type and data
 * are the request's Content-Type and body.
 */
#define CHECKOUT_HEADER_SPECVERSION      "ce-specversion"
#define CHECKOUT_HEADER_ID               "ce-id"
#define CHECKOUT_HEADER_TYPE             "ce-type"
#define CHECKOUT_HEADER_SOURCE           "ce-source"
#define CHECKOUT_HEADER_TIME             "ce-time"
#define CHECKOUT_HEADER_SUBJECT          "ce-subject"
#define CHECKOUT_HEADER_SCHEMAVERSION    "ce-schemaversion"

/* the request's Idempotency-Key: <group> ":" <ce_id> */
#define CHECKOUT_DELIVERY_KEY_HEADER     "Idempotency-Key"

/* members of a receiver's 2xx JSON reply, and of each "emit" item */
#define CHECKOUT_REPLY_STATUS            "checkoutStatus"
#define CHECKOUT_REPLY_ORDER_ID          "orderId"
#define CHECKOUT_REPLY_EMIT              "emit"
#define CHECKOUT_EMIT_TYPE               "type"
#define CHECKOUT_EMIT_DATA               "data"
#define CHECKOUT_EMIT_SCHEMAVERSION      "schemaversion"

/*
 * An emitted event's ce_id: <parent ce_id> ":" <group> ":" <n>, n from 1
 * in the reply's order, so that a redelivery derives the same ids; its
 * ce_source: PREFIX <group>.
 */
#define CHECKOUT_EMIT_SOURCE_PREFIX      "checkout-worker/"


/* --- dead letters ------------------------------------------------------ */

/*
 * A dead letter is the entry's own fields, then these seven, in this
 * order; an entry deleted before delivery has only these.
 */
#define CHECKOUT_DEAD_GROUP              "group"
#define CHECKOUT_DEAD_STREAM             "stream"
#define CHECKOUT_DEAD_ERROR              "error"
#define CHECKOUT_DEAD_ATTEMPTS           "attempts"
#define CHECKOUT_DEAD_ORIGINAL_ID        "original_id"
#define CHECKOUT_DEAD_FAILED_AT          "failed_at"
#define CHECKOUT_DEAD_CONSUMER           "consumer"

/*
 * The error of an entry deleted from the stream while it was pending, and
 * its attempts when Redis no longer knows them.
 */
#define CHECKOUT_DEAD_DELETED            "deleted_before_delivery"
#define CHECKOUT_DEAD_ATTEMPTS_UNKNOWN   "unknown"


#endif /* CHECKOUT_CONTRACT_H */
