# Bad input: every class of the README's "Bad input calls no step" table, and
# the inputs just inside each limit, which must pass.
#
# Unless a block says otherwise, the checkout's only step is /_trap/cart: if it
# ever runs, the error log says open() "/nonexistent/step-was-called/cart"
# (t/001-outcomes.t, block "a missing step location", shows it does), and every
# bad-input block checks that it does not.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();

our $TRAP = <<'_EOC_';
    location = /checkout {
        checkout;
        checkout_max_body_size 1k;
        checkout_max_depth 4;
        checkout_step validate /_trap/cart;
        add_header X-Outcome $checkout_outcome always;
        add_header X-Checkout-Id $checkout_id always;
    }
_EOC_

CheckoutTest::use_mock_services(default_config => $TRAP);

# Bad input on a keepalive connection: whatever body nginx did not read must
# not be taken for the next request. If the reply keeps the connection open,
# the next checkout on it must work; if it says "Connection: close", the
# server must then close it.
CheckoutTest::define_check(keepalive_after_bad_input => sub {
    my ($block) = @_;
    my $name = $block->name;
    my $big = CheckoutTest::body_of_size(1500);
    my @cases = (
        ['413, Content-Length', 413,
         CheckoutTest::build_request(uri => '/checkout', body => $big)],
        ['413, chunked', 413,
         CheckoutTest::build_request(uri => '/checkout',
             headers => ['Content-Type: application/json',
                         'Transfer-Encoding: chunked'],
             body => CheckoutTest::chunked($big, 500))],
        ['415 with a body', 415,
         CheckoutTest::build_request(uri => '/checkout',
             headers => ['Content-Type: text/plain'], body => $big)],
        ['405, PUT with a body', 405,
         CheckoutTest::build_request(method => 'PUT', uri => '/checkout',
                                     body => '{"customerId":"cus_1"}')],
        ['400 malformed', 400,
         CheckoutTest::build_request(uri => '/checkout', body => '{"a":')],
        ['422 not an object', 422,
         CheckoutTest::build_request(uri => '/checkout', body => '[1,2]')],
    );
    for my $c (@cases) {
        my ($what, $status, $req) = @$c;
        my $sock = CheckoutTest::http_connect();
        my $bad = CheckoutTest::http_send_recv($sock, $req, 2);
        Test::More::is($bad->{status}, $status, "$name - $what: $status");
        if (($bad->{headers}{connection} || '') =~ /close/i) {
            my $n = sysread($sock, my $buf, 1);
            Test::More::ok(!$n, "$name - $what: said close, and closed");
        } else {
            my $ok = CheckoutTest::http_send_recv($sock,
                CheckoutTest::build_request(uri => '/checkout-ok',
                                            body => '{"customerId":"cus_1"}'), 2);
            Test::More::is($ok->{status}, 201,
                           "$name - $what: the next checkout on the connection is 201")
                or Test::More::diag(Test::More::explain(
                    { map { $_ => $ok->{$_} } qw(status body error partial) }));
        }
        close $sock;
    }
});

sub nested {
    my ($depth, $open, $close) = @_;
    # the top object is depth 1
    return '{"a":' . ($open x ($depth - 1)) . '1' . ($close x ($depth - 1)) . '}';
}

no_shuffle();
run_tests();

__DATA__

=== TEST 1: GET is 405 with Allow: POST, no checkout id, no step
--- request
GET /checkout
--- more_headers
Accept: application/json
--- error_code: 405
--- response_headers_like
Allow: POST
Content-Type: application/json
Cache-Control: no-store
X-Outcome: invalid_request
X-Checkout-Id:
Server-Timing: total;dur=\d+(\.\d+)?
--- checkout_json
status: "invalid_request"
error: "method_not_allowed"
message =~ \S
checkoutId !
--- no_error_log
step-was-called



=== TEST 2: PUT with a valid JSON body is 405
--- request
PUT /checkout
{"customerId":"cus_1"}
--- error_code: 405
--- response_headers
Allow: POST
Content-Type: application/json
--- checkout_json
status: "invalid_request"
error: "method_not_allowed"
checkoutId !
--- no_error_log
step-was-called



=== TEST 3: DELETE is 405
--- request
DELETE /checkout
--- error_code: 405
--- response_headers
Allow: POST
--- checkout_json
error: "method_not_allowed"
--- no_error_log
step-was-called



=== TEST 4: HEAD is 405 with Allow: POST
--- request
HEAD /checkout
--- error_code: 405
--- response_headers
Allow: POST
--- no_error_log
step-was-called



=== TEST 5: Content-Type text/plain is 415
--- request
POST /checkout
{"customerId":"cus_1"}
--- more_headers
Content-Type: text/plain
--- error_code: 415
--- response_headers_like
Content-Type: application/json
Cache-Control: no-store
X-Outcome: invalid_request
X-Checkout-Id:
Server-Timing: total;dur=\d+(\.\d+)?
--- checkout_json
status: "invalid_request"
error: "unsupported_media_type"
message =~ \S
checkoutId !
--- no_error_log
step-was-called



=== TEST 6: no Content-Type at all is 415
--- request
POST /checkout
{"customerId":"cus_1"}
--- more_headers
X-Test: no content type
--- error_code: 415
--- checkout_json
status: "invalid_request"
error: "unsupported_media_type"
--- no_error_log
step-was-called



=== TEST 7: a form post is 415
--- request
POST /checkout
customerId=cus_1&item=book-1
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 415
--- checkout_json
error: "unsupported_media_type"
--- no_error_log
step-was-called



=== TEST 8: application/jsonx is not application/json: 415
--- request
POST /checkout
{"customerId":"cus_1"}
--- more_headers
Content-Type: application/jsonx
--- error_code: 415
--- checkout_json
error: "unsupported_media_type"
--- no_error_log
step-was-called



=== TEST 9: text/json is 415
--- request
POST /checkout
{"customerId":"cus_1"}
--- more_headers
Content-Type: text/json
--- error_code: 415
--- checkout_json
error: "unsupported_media_type"
--- no_error_log
step-was-called



=== TEST 10: application/json; charset=utf-8 is accepted
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- more_headers
Content-Type: application/json; charset=utf-8
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_123"
--- no_error_log
[error]



=== TEST 11: application/json;charset=UTF-8 (no space, upper case) is accepted
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- more_headers
Content-Type: application/json;charset=UTF-8
--- error_code: 201
--- checkout_json
status: "confirmed"
--- no_error_log
[error]



=== TEST 12: an application/*+json type is accepted
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- more_headers
Content-Type: application/vnd.shop.checkout+json
--- error_code: 201
--- checkout_json
status: "confirmed"
--- no_error_log
[error]



=== TEST 13: media types are case-insensitive (RFC 9110): Application/JSON is accepted
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- more_headers
Content-Type: Application/JSON
--- error_code: 201
--- checkout_json
status: "confirmed"
--- no_error_log
[error]



=== TEST 14: no body at all is 400 empty_body
--- request
POST /checkout
--- error_code: 400
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Outcome: invalid_request
! X-Checkout-Id
--- checkout_json
status: "invalid_request"
error: "empty_body"
message =~ \S
checkoutId !
--- no_error_log
step-was-called



=== TEST 15: Content-Length: 0 is 400 empty_body
--- request
POST /checkout
--- more_headers
Content-Type: application/json
Content-Length: 0
--- error_code: 400
--- checkout_json
status: "invalid_request"
error: "empty_body"
--- no_error_log
step-was-called



=== TEST 16: an empty chunked body is 400 empty_body
--- request eval
"POST /checkout\n0\r\n\r\n"
--- more_headers
Content-Type: application/json
Transfer-Encoding: chunked
--- error_code: 400
--- checkout_json
status: "invalid_request"
error: "empty_body"
--- no_error_log
step-was-called



=== TEST 17: not JSON is 400 malformed_json
--- request
POST /checkout
customerId=cus_1
--- error_code: 400
--- response_headers
Content-Type: application/json
X-Outcome: invalid_request
! X-Checkout-Id
--- checkout_json
status: "invalid_request"
error: "malformed_json"
message =~ \S
checkoutId !
--- no_error_log
step-was-called



=== TEST 18: a truncated object is 400 malformed_json
--- request
POST /checkout
{"customerId":"cus_1","items":[
--- error_code: 400
--- checkout_json
error: "malformed_json"
--- no_error_log
step-was-called



=== TEST 19: two objects in one body are 400 malformed_json
--- request
POST /checkout
{"customerId":"cus_1"} {"customerId":"cus_2"}
--- error_code: 400
--- checkout_json
error: "malformed_json"
--- no_error_log
step-was-called



=== TEST 20: comments are not JSON: 400 malformed_json
--- request
POST /checkout
{/* note */ "customerId":"cus_1"}
--- error_code: 400
--- checkout_json
error: "malformed_json"
--- no_error_log
step-was-called



=== TEST 21: a raw control character inside a string is 400 malformed_json
--- request eval
"POST /checkout\n{\"customerId\":\"cus\x01_1\"}"
--- error_code: 400
--- checkout_json
error: "malformed_json"
--- no_error_log
step-was-called



=== TEST 22: a JSON array at the top is 422 not_an_object
--- request
POST /checkout
[{"customerId":"cus_1"}]
--- error_code: 422
--- response_headers
Content-Type: application/json
X-Outcome: invalid_request
! X-Checkout-Id
--- checkout_json
status: "invalid_request"
error: "not_an_object"
message =~ \S
checkoutId !
--- no_error_log
step-was-called



=== TEST 23: a JSON string at the top is 422 not_an_object
--- request
POST /checkout
"cus_1"
--- error_code: 422
--- checkout_json
error: "not_an_object"
--- no_error_log
step-was-called



=== TEST 24: a JSON number at the top is 422 not_an_object
--- request
POST /checkout
2500
--- error_code: 422
--- checkout_json
error: "not_an_object"
--- no_error_log
step-was-called



=== TEST 25: JSON null at the top is 422 not_an_object
--- request
POST /checkout
null
--- error_code: 422
--- checkout_json
error: "not_an_object"
--- no_error_log
step-was-called



=== TEST 26: JSON true at the top is 422 not_an_object
--- request
POST /checkout
true
--- error_code: 422
--- checkout_json
error: "not_an_object"
--- no_error_log
step-was-called



=== TEST 27: objects nested one deeper than checkout_max_depth (4) are 422 too_deep
--- request eval
"POST /checkout\n" . main::nested(5, '{"a":', '}')
--- error_code: 422
--- response_headers
X-Outcome: invalid_request
! X-Checkout-Id
--- checkout_json
status: "invalid_request"
error: "too_deep"
message =~ \S
checkoutId !
--- no_error_log
step-was-called



=== TEST 28: arrays count as nesting too: depth 5 is 422 too_deep
--- request
POST /checkout
{"items":[[[{"sku":"book-1"}]]]}
--- error_code: 422
--- checkout_json
error: "too_deep"
--- no_error_log
step-was-called



=== TEST 29: nesting exactly at checkout_max_depth (4) passes
--- config
    location = /checkout {
        checkout;
        checkout_max_depth 4;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"items":[[{"sku":"book-1"}]],"meta":{"a":{"b":1}}}
--- error_code: 201
--- checkout_json
status: "confirmed"
--- no_error_log
[error]



=== TEST 30: the default checkout_max_depth is 16: 16 passes
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request eval
"POST /checkout\n" . main::nested(16, '[', ']')
--- error_code: 201
--- checkout_json
status: "confirmed"
--- no_error_log
[error]



=== TEST 31: the default checkout_max_depth is 16: 17 is 422 too_deep
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_trap/cart;
    }
--- request eval
"POST /checkout\n" . main::nested(17, '[', ']')
--- error_code: 422
--- checkout_json
error: "too_deep"
--- no_error_log
step-was-called



=== TEST 32: 7000 levels of nesting are refused calmly, not a crash
--- config
    location = /checkout {
        checkout;
        checkout_max_body_size 16k;
        client_body_buffer_size 16k;
        checkout_step validate /_trap/cart;
    }
--- request eval
"POST /checkout\n" . main::nested(7000, '[', ']')
--- error_code: 422
--- checkout_json
error: "too_deep"
--- no_error_log
step-was-called



=== TEST 33: a body one byte over checkout_max_body_size (Content-Length) is the JSON 413
--- request eval
"POST /checkout\n" . CheckoutTest::body_of_size(1025)
--- error_code: 413
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Outcome: invalid_request
! X-Checkout-Id
--- checkout_json
status: "invalid_request"
error: "body_too_large"
message =~ \S
checkoutId !
--- no_error_log
step-was-called



=== TEST 34: a chunked body over checkout_max_body_size is the JSON 413
--- request eval
"POST /checkout\n" . CheckoutTest::chunked(CheckoutTest::body_of_size(1025), 200)
--- more_headers
Content-Type: application/json
Transfer-Encoding: chunked
--- error_code: 413
--- response_headers
Content-Type: application/json
X-Outcome: invalid_request
--- checkout_json
status: "invalid_request"
error: "body_too_large"
--- no_error_log
step-was-called



=== TEST 35: a body of exactly checkout_max_body_size passes (Content-Length)
--- config
    location = /checkout {
        checkout;
        checkout_max_body_size 1k;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request eval
"POST /checkout\n" . CheckoutTest::body_of_size(1024)
--- error_code: 201
--- checkout_json
status: "confirmed"
--- no_error_log
[error]



=== TEST 36: a chunked body of exactly checkout_max_body_size passes
--- config
    location = /checkout {
        checkout;
        checkout_max_body_size 1k;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request eval
"POST /checkout\n" . CheckoutTest::chunked(CheckoutTest::body_of_size(1024), 300)
--- more_headers
Content-Type: application/json
Transfer-Encoding: chunked
--- error_code: 201
--- checkout_json
status: "confirmed"
--- no_error_log
[error]



=== TEST 37: over client_max_body_size nginx's own 413 page answers, no step runs
--- config
    location = /checkout {
        client_max_body_size 2k;
        checkout;
        checkout_max_body_size 1k;
        checkout_step validate /_trap/cart;
    }
--- request eval
"POST /checkout\n" . CheckoutTest::body_of_size(3000)
--- error_code: 413
--- response_body_like: 413 Request Entity Too Large
--- no_error_log
step-was-called



=== TEST 38: invalid UTF-8: a bare continuation byte
--- request eval
"POST /checkout\n{\"customerId\":\"cus\x80_1\"}"
--- error_code: 400
--- response_headers
Content-Type: application/json
X-Outcome: invalid_request
! X-Checkout-Id
--- checkout_json
status: "invalid_request"
error: "invalid_utf8"
message =~ \S
checkoutId !
--- no_error_log
step-was-called



=== TEST 39: invalid UTF-8: an overlong form of "/" (C0 AF)
--- request eval
"POST /checkout\n{\"customerId\":\"cus\xc0\xaf1\"}"
--- error_code: 400
--- checkout_json
error: "invalid_utf8"
--- no_error_log
step-was-called



=== TEST 40: invalid UTF-8: an overlong three-byte form (E0 80 AF)
--- request eval
"POST /checkout\n{\"customerId\":\"cus\xe0\x80\xaf1\"}"
--- error_code: 400
--- checkout_json
error: "invalid_utf8"
--- no_error_log
step-was-called



=== TEST 41: invalid UTF-8: a UTF-16 surrogate (ED A0 80)
--- request eval
"POST /checkout\n{\"customerId\":\"cus\xed\xa0\x80_1\"}"
--- error_code: 400
--- checkout_json
error: "invalid_utf8"
--- no_error_log
step-was-called



=== TEST 42: invalid UTF-8: a code point over U+10FFFF (F4 90 80 80)
--- request eval
"POST /checkout\n{\"customerId\":\"cus\xf4\x90\x80\x80_1\"}"
--- error_code: 400
--- checkout_json
error: "invalid_utf8"
--- no_error_log
step-was-called



=== TEST 43: invalid UTF-8: a truncated sequence (E2 82 then a quote)
--- request eval
"POST /checkout\n{\"customerId\":\"cus_1\xe2\x82\"}"
--- error_code: 400
--- checkout_json
error: "invalid_utf8"
--- no_error_log
step-was-called



=== TEST 44: invalid UTF-8 in a key
--- request eval
"POST /checkout\n{\"customer\xffId\":\"cus_1\"}"
--- error_code: 400
--- checkout_json
error: "invalid_utf8"
--- no_error_log
step-was-called



=== TEST 45: valid multi-byte UTF-8 (2, 3 and 4 bytes, up to U+10FFFF) passes and reaches the steps intact
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/echo;
    }
--- request eval
"POST /checkout\n{\"customerId\":\"Zo\xc3\xab \xe2\x98\x83 \xf0\x9d\x84\x9e \xe4\xb8\xad\xe6\x96\x87 \xf4\x8f\xbf\xbf\",\"note\":\"caf\\u00e9 \\\"q\\\" \\\\ \\n\"}"
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_echo"
stepGot.cart.customerId: "Zo\u00eb \u2603 \ud834\udd1e \u4e2d\u6587 \udbff\udfff"
stepGot.cart.note: "caf\u00e9 \"q\" \\ \n"
--- no_error_log
[error]



=== TEST 46: bad input on a keepalive connection does not poison the next request
--- config
    location = /checkout {
        checkout;
        checkout_max_body_size 1k;
        checkout_step validate /_trap/cart;
    }
    location = /checkout-ok {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
[]
--- error_code: 422
--- checkout_check: keepalive_after_bad_input
--- no_error_log
step-was-called
