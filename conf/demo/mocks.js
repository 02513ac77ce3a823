// Mock cart, payment and orders services of the ngx_checkout demo (njs 0.7.9).
// (The follow-up services the worker delivers events to: receivers.js.)
//
// Each service receives the step document the checkout module POSTs:
//   {"checkoutId":"chk_...","idempotencyKey":null,"step":"authorize",
//    "budgetMs":1180,"cart":{...client's cart...},
//    "results":{"validate":{"total":2500,"currency":"EUR","items":1}}}
// and answers with a JSON object (2xx: passed; 4xx: declined; 5xx: failed).

function reply(r, status, obj) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify(obj));
}

// The step document, or undefined after an error reply (400).
function stepDocument(r) {
    var doc;

    if (r.method !== 'POST') {
        reply(r, 405, {reason: 'method_not_allowed',
                       message: 'the mock ' + r.uri + ' takes POST'});
        return undefined;
    }

    try {
        doc = JSON.parse(r.requestText || '');
    } catch (e) {
        reply(r, 400, {reason: 'bad_step_document', message: 'not JSON: ' + e.message});
        return undefined;
    }

    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)
        || doc.cart === null || typeof doc.cart !== 'object')
    {
        reply(r, 400, {reason: 'bad_step_document',
                       message: 'expected an object with a "cart" object'});
        return undefined;
    }

    if (doc.results === null || typeof doc.results !== 'object') {
        doc.results = {};
    }

    return doc;
}

var crypto = require('crypto');

// A stable id: the same seed, the same id.
function derivedId(prefix, seed) {
    return prefix + crypto.createHash('sha256').update(seed).digest('hex')
                          .slice(0, 20);
}

function randomId(prefix) {
    var chars = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    var s = prefix;

    for (var i = 0; i < 16; i++) {
        s += chars.charAt(Math.floor(Math.random() * chars.length));
    }

    return s;
}

function isCount(n) {
    return typeof n === 'number' && Number.isInteger(n) && n >= 0;
}

// POST /validate: checks the items and computes the total from
// items[].quantity * items[].unitPrice (minor units, e.g. cents).
function cart(r) {
    var doc = stepDocument(r);
    if (doc === undefined) {
        return;
    }

    var c = doc.cart;
    var items = c.items;

    if (!Array.isArray(items) || items.length === 0) {
        return reply(r, 422, {reason: 'invalid_cart',
                              message: 'the cart needs a non-empty "items" array'});
    }

    var total = 0;
    var count = 0;

    for (var i = 0; i < items.length; i++) {
        var it = items[i];

        if (it === null || typeof it !== 'object' || typeof it.sku !== 'string'
            || !isCount(it.quantity) || it.quantity === 0 || !isCount(it.unitPrice))
        {
            return reply(r, 422, {reason: 'invalid_cart',
                                  message: 'item ' + i + ' needs "sku", a positive '
                                           + 'integer "quantity" and an integer "unitPrice"'});
        }

        if (it.sku === 'sku_out_of_stock') {
            return reply(r, 409, {reason: 'out_of_stock',
                                  message: 'Item ' + it.sku + ' is out of stock.'});
        }

        total += it.quantity * it.unitPrice;
        count += it.quantity;
    }

    reply(r, 200, {total: total,
                   currency: typeof c.currency === 'string' ? c.currency : 'EUR',
                   items: count});
}

// POST /authorize: honours the test token in cart.payment.token and charges
// the total the cart step computed (results.validate.total), never the
// client's.
function payment(r) {
    var doc = stepDocument(r);
    if (doc === undefined) {
        return;
    }

    var p = doc.cart.payment;
    var token = (p !== null && typeof p === 'object') ? p.token : undefined;
    var validated = doc.results.validate;
    var total = (validated !== null && typeof validated === 'object')
                ? validated.total : undefined;
    var currency = (validated !== null && typeof validated === 'object'
                    && typeof validated.currency === 'string')
                   ? validated.currency : 'EUR';

    if (typeof total !== 'number') {
        return reply(r, 422, {reason: 'missing_total',
                              message: 'results.validate.total is missing'});
    }

    var authorized = {status: 'authorized', paymentId: randomId('pay_'),
                      amount: total, currency: currency};

    switch (token) {

    case 'tok_visa':
        return reply(r, 200, authorized);

    case 'tok_decline':
        return reply(r, 402, {reason: 'card_declined',
                              message: 'The card was declined.'});

    case 'tok_3ds':
        return reply(r, 200, {status: 'requires_action',
                              action: {type: 'redirect_to_url',
                                       url: 'https://3ds.example.com/challenge/'
                                            + randomId('')}});

    case 'tok_timeout':
        // The payment provider is slow: the answer comes after 10 s, long
        // after the authorize step's deadline.
        setTimeout(function() { reply(r, 200, authorized); }, 10000);
        return;

    case 'tok_error':
        return reply(r, 503, {reason: 'unavailable',
                              message: 'The payment provider is unavailable.'});

    default:
        return reply(r, 402, {reason: 'invalid_token',
                              message: 'Unknown payment token.'});
    }
}

// POST /status: what became of a checkout's payment, for the review
// service that reconciles a pending_review checkout (same step document).
// The slow provider of tok_timeout did authorize in the end.
function paymentStatus(r) {
    var doc = stepDocument(r);
    if (doc === undefined) {
        return;
    }

    var p = doc.cart.payment;
    var token = (p !== null && typeof p === 'object') ? p.token : undefined;
    var v = doc.results.validate;

    if (typeof doc.checkoutId !== 'string') {
        return reply(r, 422, {reason: 'missing_checkout_id',
                              message: '"checkoutId" is missing'});
    }

    switch (token) {

    case 'tok_visa':
    case 'tok_timeout':
        return reply(r, 200, {status: 'authorized',
                              paymentId: derivedId('pay_', doc.checkoutId),
                              amount: (v && typeof v === 'object')
                                      ? v.total : null,
                              currency: (v && typeof v === 'object'
                                         && typeof v.currency === 'string')
                                        ? v.currency : 'EUR'});

    case 'tok_decline':
        return reply(r, 402, {reason: 'card_declined',
                              message: 'The card was declined.'});

    default:
        return reply(r, 404, {reason: 'no_such_payment',
                              message: 'No payment for this checkout.'});
    }
}

// POST /create: creates the order. With an idempotency key the order id is
// derived from it, so a retried request creates the same order.
function orders(r) {
    var doc = stepDocument(r);
    if (doc === undefined) {
        return;
    }

    var v = doc.results.validate;
    var a = doc.results.authorize;
    var key = doc.idempotencyKey;
    var order = {orderId: typeof key === 'string' && key !== ''
                          ? derivedId('ord_', key) : randomId('ord_'),
                 total: (v && typeof v === 'object') ? v.total : null};

    if (a && typeof a === 'object' && typeof a.paymentId === 'string') {
        order.paymentId = a.paymentId;
    }

    reply(r, 201, order);
}

export default {cart, payment, paymentStatus, orders};
