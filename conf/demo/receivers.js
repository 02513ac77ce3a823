// Mock follow-up services of the ngx_checkout demo (njs 0.7.9): the
// receivers checkout-worker delivers the checkout events to, one location per
// consumer group of conf/worker.conf, on 127.0.0.1:8094.
//
// A delivery is CloudEvents 1.0 in binary mode:
//   POST /receipt
//   Content-Type: application/json
//   ce-specversion: 1.0      ce-id: chk_...        ce-type: OrderConfirmed
//   ce-source: /checkout     ce-subject: chk_...   ce-time: 2026-...Z
//   ce-schemaversion: 1
//   Idempotency-Key: receipt:chk_...                (<group>:<ce-id>)
//
//   {"checkoutId":"chk_...","status":"confirmed","step":"create",
//    "cart":{...},"results":{"validate":{...},"authorize":{...},
//    "create":{"orderId":"ord_...",...}}}
//
// What a receiver answers decides what the worker does: 2xx done; 408, 429
// and 5xx retried later; any other status dead-lettered at once. A receiver
// may see the same event twice (a worker that dies after the 2xx and before
// its ack): every reply here is derived from the Idempotency-Key, so a
// repeated delivery gets the same answer and creates nothing new.

var crypto = require('crypto');

var PAYMENTS = 'http://127.0.0.1:8092';
var ORDERS = 'http://127.0.0.1:8093';

// /fulfillment answers 503 to an event younger than this: the warehouse sees
// a new order only a moment after it was confirmed. The worker's first
// delivery comes within milliseconds of the event, so each order is retried
// at least once, and the later attempts (after the group's backoff) pass.
var WAREHOUSE_LAG_MS = 500;

function reply(r, status, obj) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify(obj));
}

// A stable id for what a delivery creates: the same key, the same id.
function derivedId(prefix, key) {
    return prefix + crypto.createHash('sha256').update(key).digest('hex')
                          .slice(0, 20);
}

function isObject(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// The delivered event as {id, type, subject, time, key, data}, or undefined
// after an error reply. A request that is not a delivery for 'group' gets a
// 4xx, which the worker dead-letters: in this demo that means a bug.
function delivery(r, group) {
    var h = r.headersIn;
    var ev, data;

    if (r.method !== 'POST') {
        reply(r, 405, {error: 'method_not_allowed',
                       message: r.uri + ' takes POST'});
        return undefined;
    }

    ev = {id: h['ce-id'], type: h['ce-type'], subject: h['ce-subject'],
          time: h['ce-time'], key: h['Idempotency-Key']};

    if (h['ce-specversion'] !== '1.0' || !ev.id || !ev.type || !ev.subject) {
        reply(r, 400, {error: 'not_a_cloudevent',
                       message: 'expected the ce-specversion 1.0, ce-id, '
                                + 'ce-type and ce-subject headers'});
        return undefined;
    }

    if (ev.key !== group + ':' + ev.id) {
        reply(r, 400, {error: 'bad_idempotency_key',
                       message: 'expected Idempotency-Key: ' + group + ':'
                                + ev.id});
        return undefined;
    }

    try {
        data = JSON.parse(r.requestText || '');
    } catch (e) {
        reply(r, 400, {error: 'malformed_json', message: e.message});
        return undefined;
    }

    if (!isObject(data)) {
        reply(r, 422, {error: 'not_an_object',
                       message: 'the event data must be a JSON object'});
        return undefined;
    }

    ev.data = data;
    return ev;
}

// The created order in an event's data (results.create), or {}.
function orderOf(data) {
    var res = isObject(data.results) ? data.results : {};

    return isObject(res.create) ? res.create : {};
}

// POST /receipt (OrderConfirmed): "e-mails" the receipt.
function receipt(r) {
    var ev = delivery(r, 'receipt');
    if (ev === undefined) {
        return;
    }

    var cart = isObject(ev.data.cart) ? ev.data.cart : {};

    reply(r, 200, {receiptId: derivedId('rcp_', ev.key),
                   orderId: orderOf(ev.data).orderId || null,
                   to: cart.customerId || null});
}

// POST /fulfillment (OrderConfirmed): hands the order to the warehouse,
// which is not ready for an order confirmed less than WAREHOUSE_LAG_MS ago
// (503: the worker retries with its backoff).
function fulfillment(r) {
    var ev = delivery(r, 'fulfillment');
    if (ev === undefined) {
        return;
    }

    var age = Date.now() - Date.parse(ev.time);

    if (age < WAREHOUSE_LAG_MS) {
        return reply(r, 503, {error: 'not_ready',
                              message: 'the warehouse does not see order '
                                       + (orderOf(ev.data).orderId || ev.id)
                                       + ' yet (the event is ' + age
                                       + ' ms old)'});
    }

    reply(r, 202, {shipmentId: derivedId('shp_', ev.key),
                   orderId: orderOf(ev.data).orderId || null});
}

// POST /analytics (every event type): counted, nothing to answer.
function analytics(r) {
    if (delivery(r, 'analytics') === undefined) {
        return;
    }

    r.return(204);
}

// POST /support (CheckoutDeclined): opens a ticket so someone can contact
// the customer.
function support(r) {
    var ev = delivery(r, 'support');
    if (ev === undefined) {
        return;
    }

    var res = isObject(ev.data.results) ? ev.data.results : {};

    reply(r, 200, {ticketId: derivedId('tkt_', ev.key),
                   checkoutId: ev.data.checkoutId || ev.subject,
                   step: ev.data.step || null,
                   result: res[ev.data.step] || null});
}

// POSTs 'doc' as JSON to 'url'; resolves to {status, body} (body: the
// parsed JSON reply, or null).
function postJson(url, doc) {
    return ngx.fetch(url, {method: 'POST',
                           headers: {'Content-Type': 'application/json'},
                           body: JSON.stringify(doc)})
        .then(function(res) {
            return res.text().then(function(text) {
                var body = null;

                try {
                    body = JSON.parse(text);
                } catch (e) {
                    body = null;
                }

                return {status: res.status, body: body};
            });
        });
}

// POST /review (CheckoutPendingReview): reconciles a checkout whose payment
// step timed out. It asks the payment service what became of the payment;
// if it was authorized, it creates the order (the checkout's own create step
// never ran) and answers the worker with the checkout's new status and the
// OrderConfirmed event to emit; if it was declined, CheckoutDeclined. While
// the payment service cannot say, 503: the worker asks again later.
function review(r) {
    var ev = delivery(r, 'review');
    if (ev === undefined) {
        return;
    }

    var d = ev.data;

    if (ev.type !== 'CheckoutPendingReview' || d.status !== 'pending_review') {
        // nothing to reconcile
        return reply(r, 200, {});
    }

    if (typeof d.checkoutId !== 'string' || !isObject(d.cart)) {
        return reply(r, 422, {error: 'bad_event',
                              message: 'expected "checkoutId" and "cart"'});
    }

    var results = isObject(d.results) ? d.results : {};
    var doc = {checkoutId: d.checkoutId, idempotencyKey: ev.key,
               step: 'review', budgetMs: 5000, cart: d.cart,
               results: results};

    postJson(PAYMENTS + '/status', doc)
        .then(function(pay) {
            var p = pay.body;

            if (pay.status === 200 && isObject(p)
                && p.status === 'authorized')
            {
                results.authorize = p;
                doc.step = 'create';
                return postJson(ORDERS + '/create', doc)
                    .then(function(order) {
                        return confirmed(r, d, results, order);
                    });
            }

            if (pay.status >= 400 && pay.status < 500 && pay.status !== 408
                && pay.status !== 429)
            {
                return declined(r, d, results, p);
            }

            reply(r, 503, {error: 'payment_unknown',
                           message: 'the payment service cannot tell yet '
                                    + '(HTTP ' + pay.status + ')'});
        })
        .catch(function(e) {
            reply(r, 503, {error: 'unavailable', message: String(e)});
        });
}

function confirmed(r, d, results, order) {
    var o = order.body;

    if (order.status !== 201 || !isObject(o) || typeof o.orderId !== 'string') {
        return reply(r, 503, {error: 'order_not_created',
                              message: 'the orders service answered HTTP '
                                       + order.status});
    }

    results.create = o;

    reply(r, 200, {
        checkoutStatus: 'confirmed',
        orderId: o.orderId,
        emit: [{type: 'OrderConfirmed',
                data: {checkoutId: d.checkoutId, status: 'confirmed',
                       step: 'create', cart: d.cart, results: results,
                       reconciledBy: 'review'}}]
    });
}

function declined(r, d, results, p) {
    var why = isObject(p) ? p : {};

    results.authorize = why;

    reply(r, 200, {
        checkoutStatus: 'declined',
        emit: [{type: 'CheckoutDeclined',
                data: {checkoutId: d.checkoutId, status: 'declined',
                       step: 'authorize', cart: d.cart, results: results,
                       reason: why.reason || 'declined',
                       reconciledBy: 'review'}}]
    });
}

export default {receipt, fulfillment, analytics, support, review};
