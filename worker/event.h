/* checkout-worker events: a stream entry's fields, checked before any
 * delivery (docs/contract.md, "Event validation").
 *
 * An entry holds the fields the nginx module writes (the CloudEvent
 * attributes, content-type and data: checkout_contract.h) and, for a
 * replayed dead letter, the group it is replayed for. Other fields are
 * ignored. An entry that breaks a rule is never delivered nor retried: the
 * error text, which starts with the contract's reason code, goes to the
 * dead-letter stream. */

#ifndef CHECKOUT_WORKER_EVENT_H
#define CHECKOUT_WORKER_EVENT_H

#include <stddef.h>

#define EVENT_OK 0
#define EVENT_MALFORMED 1       /* err: "malformed_event: missing ce_id" */
#define EVENT_UNSUPPORTED 2     /* err: "unsupported_schema_version: 2" */

#define EVENT_MAX_VALUE 256     /* bytes of a ce_* or content-type value */
#define EVENT_MAX_DEPTH 64      /* nesting of arrays and objects in data */

/* The entry's fields. The strings point into the entry (NUL-terminated, as
 * hiredis gives them); NULL when the field is absent. */
typedef struct streamEvent {
    const char *specversion, *id, *type, *source, *time, *subject,
               *schemaversion, *content_type, *data, *replay_group;
    size_t datalen;
    int major;                  /* schema major version */
} streamEvent;

int eventParse(streamEvent *ev, char **fields, const size_t *lens,
               size_t npairs, const int *versions, int nversions, char *err,
               size_t errlen);
int eventVersionMajor(const char *s, size_t len);

#endif
