# The five outcomes and what decides them: every row of the README's
# "step answered -> outcome" and "Replies" tables.
#
# Steps are real subrequests to real services: /_svc/PATH proxies to the mock
# services of t/lib/CheckoutTest.pm (a second server in the same nginx, echo
# module). A step that must not run is /_trap/NAME: if it runs, the error log
# has open() "/nonexistent/step-was-called/NAME" (block "a missing step
# location" shows that it does).

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use Test::More ();

CheckoutTest::use_mock_services();

# Location and statusUrl carry the checkout's own id, below the request URI.
CheckoutTest::define_check(location_is_status_url => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my ($uri, $req_body) = $block->request =~ m{^\s*POST\s+(\S+)[^\n]*\n(.*)\z}s;
    # the block's own reply has no headers here: ask again, same config
    my $res = CheckoutTest::post_checkout($req_body, uri => $uri, close => 1);
    my $d = CheckoutTest::json_decode($res->{body} || '');
    $d = {} unless ref $d eq 'HASH';
    my $id = $d->{checkoutId} || '';
    Test::More::like($id, CheckoutTest::id_re(), "$name - second reply has an id");
    Test::More::is($res->{headers}{location}, "$uri/$id",
                   "$name - Location is $uri/<checkoutId>");
    if (exists $d->{statusUrl}) {
        Test::More::is($d->{statusUrl}, "$uri/$id",
                       "$name - statusUrl is $uri/<checkoutId>");
    }
    Test::More::isnt($id, $doc->{checkoutId}, "$name - each checkout has its own id");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: confirmed: 201, the create step's object, Location, no-store
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok   timeout=300ms;
        checkout_step authorize /_svc/pay/ok    timeout=1200ms on_timeout=pending;
        checkout_step create    /_svc/orders/ok timeout=300ms;
    }
--- request
POST /checkout
{"customerId":"cus_1","currency":"EUR",
 "items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],
 "payment":{"method":"card","token":"tok_visa"}}
--- error_code: 201
--- response_headers_like
Content-Type: application/json
Cache-Control: no-store
Retry-After:
Location: /checkout/chk_[A-Za-z0-9]{22}
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=\d+(\.\d+)?,\s*create;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- response_body_like: ^\{\s*"status"\s*:\s*"confirmed"\s*,\s*"checkoutId"\s*:\s*"chk_[A-Za-z0-9]{22}"\s*,
--- checkout_json
status: "confirmed"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
orderId: "ord_123"
total: 2500
currency: "EUR"
authorizationId !
step !
reason !
--- no_error_log
[error]
[warn]



=== TEST 2: confirmed: Location and the body name the same checkout, below the request URI
--- config
    location = /api/v2/checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /api/v2/checkout
{"customerId":"cus_1","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}]}
--- error_code: 201
--- response_headers_like
Location: /api/v2/checkout/chk_[A-Za-z0-9]{22}
--- checkout_json
status: "confirmed"
--- checkout_check: location_is_status_url
--- no_error_log
[error]



=== TEST 3: confirmed: steps that are not upstreams; only the last step's fields reach the client
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_direct/cart;
        checkout_step create   /_direct/orders;
    }
    location = /_direct/cart {
        internal;
        default_type application/json;
        return 200 '{"total":4100,"currency":"SEK","internalNote":"cart-only"}';
    }
    location = /_direct/orders {
        internal;
        default_type application/json;
        echo '{"orderId":"ord_9","eta":"2d","lines":[{"sku":"book-1","qty":2}],"gift":false,"note":null}';
    }
--- request
POST /checkout
{"customerId":"cus_2","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}]}
--- error_code: 201
--- response_headers_like
Content-Type: application/json
Cache-Control: no-store
Server-Timing: validate;dur=\d+(\.\d+)?,\s*create;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "confirmed"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
orderId: "ord_9"
eta: "2d"
lines: [{"sku":"book-1","qty":2}]
gift: false
note: null
total !
internalNote !
--- no_error_log
[error]



=== TEST 4: requires_action: 202 with the step's action, no later step
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/3ds;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_3ds"}}
--- error_code: 202
--- response_headers_like
Content-Type: application/json
Cache-Control: no-store
Location:
Retry-After:
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "requires_action"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
step: "authorize"
action: {"type":"redirect_to_url","url":"https://bank.example/3ds?session=s_1","expiresInSeconds":600}
orderId !
--- no_error_log
step-was-called
[error]



=== TEST 5: pending_review on a step timeout with on_timeout=pending
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=200ms on_timeout=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_timeout"}}
--- timeout: 1
--- error_code: 202
--- response_headers_like
Content-Type: application/json
Cache-Control: no-store
Retry-After: 5
Location: /checkout/chk_[A-Za-z0-9]{22}
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "pending_review"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
step: "authorize"
message =~ \S
nextCheckAfterSeconds: 5
statusUrl =~ ^/checkout/chk_[A-Za-z0-9]{22}$
orderId !
--- checkout_check: location_is_status_url
--- error_log
upstream timed out
--- no_error_log
step-was-called



=== TEST 6: pending_review on a 5xx with on_error=pending
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/503 on_error=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}]}
--- error_code: 202
--- response_headers_like
Content-Type: application/json
Retry-After: 5
Location: /checkout/chk_[A-Za-z0-9]{22}
--- checkout_json
status: "pending_review"
step: "authorize"
message =~ \S
nextCheckAfterSeconds: 5
statusUrl =~ ^/checkout/chk_[A-Za-z0-9]{22}$
--- checkout_check: location_is_status_url
--- no_error_log
step-was-called



=== TEST 7: a connect error is failed even with on_error=pending: the request never reached the service
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_closed on_error=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 503
--- response_headers
Retry-After: 5
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
retryable: true
nextCheckAfterSeconds !
--- error_log
Connection refused
--- no_error_log
step-was-called



=== TEST 8: pending_review on a reply that is not JSON with on_error=pending
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/not-json on_error=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 202
--- checkout_json
status: "pending_review"
step: "authorize"
--- no_error_log
step-was-called



=== TEST 9: pending_review on a 429 with on_error=pending
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/429 on_error=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 202
--- checkout_json
status: "pending_review"
step: "authorize"
--- no_error_log
step-was-called



=== TEST 10: pending_review on a reply too large for the step location with on_error=pending
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_small/pay/big on_error=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 202
--- checkout_json
status: "pending_review"
step: "authorize"
--- no_error_log
step-was-called



=== TEST 11: on_error=pending does not cover a timeout: failed, reason timeout
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/sleep10 timeout=200ms on_error=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 503
--- response_headers
Retry-After: 5
--- checkout_json
status: "failed"
step: "authorize"
reason: "timeout"
retryable: true
--- no_error_log
step-was-called



=== TEST 12: on_timeout=pending does not cover a 5xx: failed, reason unavailable
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/500 on_timeout=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
retryable: true
--- no_error_log
step-was-called



=== TEST 13: on_error=pending does not turn a decline into pending_review
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/decline on_error=pending on_timeout=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 402
--- checkout_json
status: "declined"
reason: "card_declined"
--- no_error_log
step-was-called



=== TEST 14: checkout_retry_after sets Retry-After and nextCheckAfterSeconds
--- config
    location = /checkout {
        checkout;
        checkout_retry_after 2s;
        checkout_step authorize /_svc/pay/503 on_error=pending;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 202
--- response_headers
Retry-After: 2
--- checkout_json
status: "pending_review"
nextCheckAfterSeconds: 2



=== TEST 15: checkout_retry_after is at least 1 second (0s at http level gives Retry-After: 1)
--- http_config
    checkout_retry_after 0s;
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/503;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- response_headers
Retry-After: 1
--- checkout_json
status: "failed"
reason: "unavailable"



=== TEST 16: declined by the payment step: its 4xx, reason and message copied, no later step
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/decline timeout=1200ms on_timeout=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_decline"}}
--- error_code: 402
--- response_headers_like
Content-Type: application/json
Cache-Control: no-store
Retry-After:
Location:
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "declined"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
step: "authorize"
reason: "card_declined"
message: "Your card was declined."
orderId !
retryable !
--- no_error_log
step-was-called
[error]



=== TEST 17: declined by the cart step (409 out_of_stock): payment and order never called
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/out_of_stock;
        checkout_step authorize /_trap/payments;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1","items":[{"sku":"sku_out_of_stock","quantity":1,"unitPrice":999}]}
--- error_code: 409
--- response_headers_like
Server-Timing: validate;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "declined"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
step: "validate"
reason: "out_of_stock"
message: "sku_out_of_stock is out of stock"
--- no_error_log
step-was-called
[error]



=== TEST 18: declined by a service 4xx without a JSON body: still declined, with its status
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/403-text;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 403
--- checkout_json
status: "declined"
step: "authorize"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
--- no_error_log
step-was-called



=== TEST 19: a service's own 404 (JSON) is a decline, not an outage
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/404-json;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 404
--- checkout_json
status: "declined"
step: "authorize"
reason: "unknown_payment_method"
message: "No such payment method."
--- no_error_log
step-was-called



=== TEST 20: failed: a 5xx from the service is 503 unavailable, retryable, Retry-After
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/502;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_error"}}
--- error_code: 503
--- response_headers_like
Content-Type: application/json
Cache-Control: no-store
Retry-After: 5
Location:
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "failed"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
step: "authorize"
reason: "unavailable"
message =~ \S
retryable: true
orderId !
--- no_error_log
step-was-called



=== TEST 21: failed: a 500 that nginx itself generated in the step location
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_direct/pay;
        checkout_step create    /_trap/orders;
    }
    location = /_direct/pay {
        internal;
        return 500;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- response_headers
Retry-After: 5
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
retryable: true
--- no_error_log
step-was-called



=== TEST 22: failed: connect error (connection refused)
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_closed timeout=1s;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 503
--- response_headers
Retry-After: 5
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
retryable: true
--- error_log
Connection refused
--- no_error_log
step-was-called



=== TEST 23: failed: a step reply that is not JSON
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/not-json;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- response_headers
Retry-After: 5
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
retryable: true
--- no_error_log
step-was-called



=== TEST 24: failed: a step reply that is a JSON array
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/array;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
--- no_error_log
step-was-called



=== TEST 25: failed: a step reply that is a JSON string
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/string;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
reason: "unavailable"
--- no_error_log
step-was-called



=== TEST 26: failed: a step reply that is a JSON number
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/number;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
reason: "unavailable"
--- no_error_log
step-was-called



=== TEST 27: failed: an empty 200 reply
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/empty;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
reason: "unavailable"
--- no_error_log
step-was-called



=== TEST 28: failed: a truncated JSON object
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/truncated;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
reason: "unavailable"
--- no_error_log
step-was-called



=== TEST 29: failed: a JSON object followed by more JSON
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/trailing;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
reason: "unavailable"
--- no_error_log
step-was-called



=== TEST 30: failed: a proxied reply larger than the step location's subrequest_output_buffer_size
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_small/pay/big;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- response_headers
Retry-After: 5
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
retryable: true
--- no_error_log
step-was-called



=== TEST 31: failed: a direct reply larger than the step location's subrequest_output_buffer_size
--- config eval
'
    location = /checkout {
        checkout;
        checkout_step authorize /_direct/big;
        checkout_step create    /_trap/orders;
    }
    location = /_direct/big {
        internal;
        subrequest_output_buffer_size 1k;
        default_type application/json;
        return 200 \'{"status":"authorized","pad":"' . ('x' x 3000) . '"}\';
    }
'
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
--- no_error_log
step-was-called



=== TEST 32: the same 3 KB reply passes with a large enough subrequest_output_buffer_size
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/big;
        checkout_step create    /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_123"
--- no_error_log
[error]



=== TEST 33: failed: 408 from a step is an outage, not a decline
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/408;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- response_headers
Retry-After: 5
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
retryable: true
--- no_error_log
step-was-called



=== TEST 34: failed: 429 from a step is an outage, not a decline
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/429;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- response_headers
Retry-After: 5
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
retryable: true
--- no_error_log
step-was-called



=== TEST 35: failed: a missing step location (nginx's own 404); the /_trap/ probe shows in the log
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
step: "create"
reason: "unavailable"
retryable: true
--- error_log
open() "/nonexistent/step-was-called/orders" failed



=== TEST 36: step replies may nest 64 levels
--- config eval
my $deep = ('{"a":' x 64) . '1' . ('}' x 64);
'
    location = /checkout {
        checkout;
        checkout_step authorize /_direct/deep;
        checkout_step create    /_svc/orders/ok;
    }
    location = /_direct/deep {
        internal;
        default_type application/json;
        return 200 \'' . $deep . '\';
    }
'
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_123"
--- no_error_log
[error]



=== TEST 37: a step reply nested 65 levels is not accepted
--- config eval
my $deep = ('{"a":' x 65) . '1' . ('}' x 65);
'
    location = /checkout {
        checkout;
        checkout_step authorize /_direct/deep;
        checkout_step create    /_trap/orders;
    }
    location = /_direct/deep {
        internal;
        default_type application/json;
        return 200 \'' . $deep . '\';
    }
'
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
--- no_error_log
step-was-called



=== TEST 38: confirmed: the create step cannot override status or checkoutId
--- config
    location = /checkout {
        checkout;
        checkout_step create /_direct/orders;
    }
    location = /_direct/orders {
        internal;
        default_type application/json;
        return 200 '{"orderId":"ord_1","status":"created","checkoutId":"chk_fake"}';
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- response_body_unlike: "status".*"status"|"checkoutId".*"checkoutId"
--- checkout_json
status: "confirmed"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
orderId: "ord_1"
--- no_error_log
[error]



=== TEST 39: declined: reason and message are copied exactly (escapes, non-ASCII)
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_direct/pay;
        checkout_step create    /_trap/orders;
    }
    location = /_direct/pay {
        internal;
        default_type application/json;
        return 402 '{"reason":"card_declined","message":"Karte \\"abgelehnt\\" – 💳 \\u00e9\\nbitte / \\\\"}';
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 402
--- checkout_json
status: "declined"
step: "authorize"
reason: "card_declined"
message: "Karte \"abgelehnt\" – 💳 \u00e9\nbitte / \\"
--- no_error_log
step-was-called
