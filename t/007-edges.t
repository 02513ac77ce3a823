# Edges of the cut-off and of the reply: what a deadline must not blame or
# claim, what a request URI must not inject, and step replies that reach
# the module in pieces (a temporary file read with aio threads).

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use IO::Socket::INET ();

CheckoutTest::use_mock_services();

# A port that accepts TCP connections (the kernel completes them) but whose
# owner never reads or answers: a TLS handshake to it never ends, while a
# plain HTTP request is sent into the socket buffer and never answered.
our $Blackhole = IO::Socket::INET->new(Listen => 64, LocalAddr => '127.0.0.1',
                                       LocalPort => 0, ReuseAddr => 1)
    or die "blackhole socket: $!";
$ENV{TEST_NGINX_BLACKHOLE_PORT} = $Blackhole->sockport;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a percent-encoded CR LF in the request URI does not split the Location header
--- config
    location /co {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /co%0d%0aX-Injected:%20yes
{"customerId":"cus_1"}
--- error_code: 201
--- response_headers_like
X-Injected:
Location: ^/co%0D%0AX-Injected:%20yes/chk_[A-Za-z0-9]{22}$
--- checkout_json
status: "confirmed"
--- no_error_log
[error]



=== TEST 2: a step URI may carry arguments
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_args?tenant=eu&mode=strict;
    }
    location = /_args {
        internal;
        return 200 '{"tenant":"$arg_tenant","mode":"$arg_mode","orderId":"ord_9"}';
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_json
status: "confirmed"
tenant: "eu"
mode: "strict"
orderId: "ord_9"
--- no_error_log
[error]



=== TEST 3: checkout_timeout 0 is refused
--- config
    location = /checkout {
        checkout;
        checkout_timeout 0;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log
"checkout_timeout" must be more than 0



=== TEST 4: a step's own proxy_read_timeout is the step's timeout (503), not the budget's (504)
--- config
    location = /checkout {
        checkout;
        checkout_timeout 2s;
        checkout_step authorize /_quick/pay/sleep10;
        checkout_step create    /_trap/orders;
    }
    location /_quick/ {
        internal;
        proxy_read_timeout 100ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 503
--- checkout_json
status: "failed"
step: "authorize"
reason: "timeout"
message: "the authorize step did not answer in time"
--- error_log
upstream timed out (110: Connection timed out) while reading response header
--- no_error_log
step-was-called



=== TEST 5: a cut-off does not count as a failure of the service's peers
With max_fails=1 and two servers, three cut-offs in a row would leave no
live peer if each counted as a failure: the third checkout would fail at once
with "no live upstreams" instead of timing out.
--- http_config
    upstream slow_payments {
        server 127.0.0.1:$TEST_NGINX_BACKEND_PORT max_fails=1 fail_timeout=30s;
        server 127.0.0.1:$TEST_NGINX_SERVER_PORT max_fails=1 fail_timeout=30s;
    }
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_slowpay timeout=200ms;
    }
    location = /_slowpay {
        internal;
        proxy_pass http://slow_payments/pay/sleep10;
    }
    location = /pay/sleep10 {
        echo_sleep 10;
        echo '{"status":"authorized"}';
    }
--- request eval
["POST /checkout\n{\"customerId\":\"cus_1\"}",
 "POST /checkout\n{\"customerId\":\"cus_1\"}",
 "POST /checkout\n{\"customerId\":\"cus_1\"}"]
--- error_code eval
[503, 503, 503]
--- response_body_like eval
["\"reason\":\"timeout\"", "\"reason\":\"timeout\"", "\"reason\":\"timeout\""]
--- timeout: 1
--- no_error_log
no live upstreams



=== TEST 6: a step cut off before its request left nginx (TLS handshake) is failed, not pending_review
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_tls timeout=200ms on_timeout=pending;
    }
    location = /_tls {
        internal;
        proxy_pass https://127.0.0.1:$TEST_NGINX_BLACKHOLE_PORT/pay;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 503
--- checkout_json
status: "failed"
step: "authorize"
reason: "timeout"
--- error_log
checkout step "authorize": upstream timed out after 200 ms, request cut off



=== TEST 7: a step cut off after its request was sent is pending_review with on_timeout=pending
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_plain timeout=200ms on_timeout=pending;
    }
    location = /_plain {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BLACKHOLE_PORT/pay;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 202
--- checkout_json
status: "pending_review"
step: "authorize"
--- error_log
checkout step "authorize": upstream timed out after 200 ms, request cut off



=== TEST 8: a step reply read back from a proxy temporary file with aio threads is judged whole
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_spilled;
    }
    location = /_spilled {
        internal;
        aio threads;
        proxy_buffers 2 1k;
        proxy_buffer_size 1k;
        proxy_busy_buffers_size 1k;
        subrequest_output_buffer_size 64k;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/large;
    }
    location = /large {
        default_type application/json;
        echo -n '{"orderId":"ord_big","pad":"';
        echo_duplicate 40000 'x';
        echo '"}';
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_big"
pad =~ ^x{40000}$
--- no_error_log
[error]



=== TEST 9: checkout_redis_timeout 0 is refused by its own name
--- config
    location = /checkout {
        checkout;
        checkout_redis_timeout 0;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log
"checkout_redis_timeout" must be more than 0
--- no_error_log
"checkout_timeout" must
