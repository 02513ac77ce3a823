# Directives: every one in every context it is allowed in, inheritance, and
# the configuration errors nginx must refuse to start with. Each refusal names
# the problem and the place: "in .../nginx.conf:LINE". Where the error belongs
# to one directive, CheckoutTest::at_conf_line() also checks that LINE of the
# very file nginx read holds that directive.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();

CheckoutTest::use_mock_services();

no_shuffle();
run_tests();

__DATA__

=== TEST 1: every directive at http, server and location level; step names of a-z 0-9 _ -, 32 long
--- http_config
    checkout_timeout 3s;
    checkout_max_body_size 8k;
    checkout_max_depth 10;
    checkout_retry_after 7s;
--- config
    checkout_timeout 2s;
    checkout_max_body_size 4k;
    checkout_max_depth 8;
    checkout_retry_after 9s;
    location = /checkout {
        checkout;
        checkout_timeout 1500ms;
        checkout_max_body_size 2k;
        checkout_max_depth 6;
        checkout_step v-1_x /_svc/cart/ok timeout=1s on_timeout=fail on_error=fail;
        checkout_step abcdefghijklmnopqrstuvwxyz012345 /_svc/orders/ok timeout=300ms on_timeout=pending on_error=pending;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- response_headers_like
Server-Timing: v-1_x;dur=\d+(\.\d+)?,\s*abcdefghijklmnopqrstuvwxyz012345;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "confirmed"
orderId: "ord_123"
--- no_error_log
[error]
[warn]



=== TEST 2: checkout_retry_after is inherited from the server level
--- http_config
    checkout_retry_after 7s;
--- config
    checkout_retry_after 9s;
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/503;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- response_headers
Retry-After: 9
--- checkout_json
status: "failed"
reason: "unavailable"



=== TEST 3: checkout_retry_after at location level wins
--- config
    checkout_retry_after 9s;
    location = /checkout {
        checkout;
        checkout_retry_after 4s;
        checkout_step authorize /_svc/pay/503 on_error=pending;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 202
--- response_headers
Retry-After: 4
--- checkout_json
status: "pending_review"
nextCheckAfterSeconds: 4



=== TEST 4: checkout_max_depth is inherited from the http level
--- http_config
    checkout_max_depth 3;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_trap/cart;
    }
--- request
POST /checkout
{"items":[[{"sku":"book-1"}]]}
--- error_code: 422
--- checkout_json
error: "too_deep"
--- no_error_log
step-was-called



=== TEST 5: checkout_max_body_size is inherited from the server level
--- config
    checkout_max_body_size 100;
    location = /checkout {
        checkout;
        checkout_step validate /_trap/cart;
    }
--- request
POST /checkout
{"customerId":"cus_1","pad":"pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"}
--- error_code: 413
--- checkout_json
error: "body_too_large"
--- no_error_log
step-was-called



=== TEST 6: checkout_timeout is inherited from the http level
--- http_config
    checkout_timeout 200ms;
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/sleep10;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 504
--- checkout_json
status: "failed"
reason: "timeout"



=== TEST 7: checkout_max_body_size equal to client_body_buffer_size is fine
--- config
    location = /checkout {
        client_body_buffer_size 4k;
        checkout;
        checkout_max_body_size 4k;
        checkout_step validate /_svc/cart/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_json
status: "confirmed"



=== TEST 8: checkout_max_body_size defaults to the location's client_body_buffer_size: 32768 bytes pass
--- config
    location = /checkout {
        client_body_buffer_size 32k;
        checkout;
        checkout_step validate /_svc/cart/ok;
    }
--- request eval
"POST /checkout\n" . CheckoutTest::body_of_size(32768)
--- error_code: 201
--- checkout_json
status: "confirmed"



=== TEST 9: checkout_max_body_size defaults to the location's client_body_buffer_size: 32769 bytes are the JSON 413
--- config
    location = /checkout {
        client_body_buffer_size 32k;
        checkout;
        checkout_step validate /_trap/cart;
    }
--- request eval
"POST /checkout\n" . CheckoutTest::body_of_size(32769)
--- error_code: 413
--- checkout_json
status: "invalid_request"
error: "body_too_large"
--- no_error_log
step-was-called



=== TEST 10: a duplicate step name
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step validate /_svc/pay/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/(?=.*duplicate)(?=.*validate)/i,
                           'checkout_step validate /_svc/pay/ok')



=== TEST 11: an unknown step parameter
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok retries=3;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/retries/,
                           'checkout_step validate /_svc/cart/ok retries=3')



=== TEST 12: a step parameter that is a bare word
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok fast;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/"?fast"?/,
                           'checkout_step validate /_svc/cart/ok fast')



=== TEST 13: a bad time in timeout=
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok timeout=abc;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/abc/,
                           'checkout_step validate /_svc/cart/ok timeout=abc')



=== TEST 14: a bad on_timeout value
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/ok on_timeout=maybe;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/maybe/,
                           'checkout_step authorize /_svc/pay/ok on_timeout=maybe')



=== TEST 15: a bad on_error value
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/ok on_error=retry;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/retry/,
                           'checkout_step authorize /_svc/pay/ok on_error=retry')



=== TEST 16: checkout without any step
--- config
    location = /checkout {
        checkout;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/checkout_step|\bsteps?\b/)



=== TEST 17: the step name "total" is reserved (Server-Timing)
--- config
    location = /checkout {
        checkout;
        checkout_step total /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/total/,
                           'checkout_step total /_svc/cart/ok')



=== TEST 18: a step name with an upper-case letter
--- config
    location = /checkout {
        checkout;
        checkout_step Validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/Validate/,
                           'checkout_step Validate /_svc/cart/ok')



=== TEST 19: a step name with a dot
--- config
    location = /checkout {
        checkout;
        checkout_step pay.ment /_svc/pay/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/pay\.ment/,
                           'checkout_step pay.ment /_svc/pay/ok')



=== TEST 20: a step name of 33 characters
--- config
    location = /checkout {
        checkout;
        checkout_step abcdefghijklmnopqrstuvwxyz0123456 /_svc/pay/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/abcdefghijklmnopqrstuvwxyz0123456|name/,
                           'checkout_step abcdefghijklmnopqrstuvwxyz0123456 /_svc/pay/ok')



=== TEST 21: a step URI that does not start with /
--- config
    location = /checkout {
        checkout;
        checkout_step validate _svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/_svc\/cart\/ok|URI|uri/,
                           'checkout_step validate _svc/cart/ok')



=== TEST 22: checkout_step without a URI
--- config
    location = /checkout {
        checkout;
        checkout_step validate;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/checkout_step/, 'checkout_step validate;')



=== TEST 23: checkout_max_body_size larger than client_body_buffer_size
--- config
    location = /checkout {
        client_body_buffer_size 8k;
        checkout;
        checkout_max_body_size 16k;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/client_body_buffer_size/)



=== TEST 24: checkout_max_body_size larger than the default client_body_buffer_size (16k)
--- config
    location = /checkout {
        checkout;
        checkout_max_body_size 1m;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/client_body_buffer_size/)



=== TEST 25: checkout_max_depth that is not a number
--- config
    location = /checkout {
        checkout;
        checkout_max_depth deep;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/checkout_max_depth.*invalid|invalid.*checkout_max_depth|deep/,
                           'checkout_max_depth deep;')



=== TEST 26: checkout_max_depth 0 would refuse every body
--- config
    location = /checkout {
        checkout;
        checkout_max_depth 0;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/checkout_max_depth|\b0\b/, 'checkout_max_depth 0;')



=== TEST 27: a bad checkout_timeout
--- config
    location = /checkout {
        checkout;
        checkout_timeout soon;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/soon|checkout_timeout/, 'checkout_timeout soon;')



=== TEST 28: a bad checkout_retry_after
--- config
    location = /checkout {
        checkout;
        checkout_retry_after later;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/later|checkout_retry_after/, 'checkout_retry_after later;')



=== TEST 29: checkout is a location directive, not a server one
--- config
    checkout;
    location = /checkout {
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/not allowed here/, 'checkout;')
