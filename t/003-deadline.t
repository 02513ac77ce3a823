# Deadlines: a step that does not answer in time is cut off at its deadline,
# the client gets its reply at that moment (--- timeout: 1 fails a reply that
# waited for the 10 s backend), nginx logs "upstream timed out" like its own
# proxy_read_timeout, and the client's keepalive connection stays usable.
# The whole checkout_timeout budget gives 504 when it runs out.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use Test::More ();
use Time::HiRes ();

CheckoutTest::use_mock_services();

my $CART = '{"customerId":"cus_1","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],'
         . '"payment":{"method":"card","token":"tok_timeout"}}';

# On one keepalive connection: a checkout whose payment step is cut off at
# 200 ms, then a fast one, then again; each answered at once.
CheckoutTest::define_check(keepalive_after_cutoff => sub {
    my ($block) = @_;
    my $name = $block->name;
    my $sock = CheckoutTest::http_connect();
    Test::More::ok($sock, "$name - connected");
    return unless $sock;
    for my $round (1 .. 2) {
        my $slow = CheckoutTest::http_send_recv($sock,
            CheckoutTest::build_request(uri => '/checkout', body => $CART), 2);
        Test::More::is($slow->{status}, 503, "$name - round $round: slow checkout is 503")
            or Test::More::diag(Test::More::explain($slow));
        my $d = CheckoutTest::json_decode($slow->{body} || '') || {};
        Test::More::is($d->{reason}, 'timeout', "$name - round $round: reason timeout");
        Test::More::cmp_ok($slow->{elapsed}, "<", 0.6 * CheckoutTest::slack(),
            "$name - round $round: slow checkout answered at the 200 ms deadline");
        Test::More::unlike($slow->{headers}{connection} || '', qr/close/i,
            "$name - round $round: the connection is kept alive");
        my $fast = CheckoutTest::http_send_recv($sock,
            CheckoutTest::build_request(uri => '/checkout-fast', body => $CART), 2);
        Test::More::is($fast->{status}, 201,
            "$name - round $round: a fast checkout on the same connection is 201")
            or Test::More::diag(Test::More::explain($fast));
        Test::More::cmp_ok($fast->{elapsed}, "<", 0.3 * CheckoutTest::slack(),
            "$name - round $round: and answered at once");
    }
    close $sock;
});

# Clients that give up during a slow step; then nginx still serves checkouts.
CheckoutTest::define_check(healthy_after_disconnect => sub {
    my ($block) = @_;
    my $name = $block->name;
    for my $i (1 .. 3) {
        my $sock = CheckoutTest::http_connect();
        syswrite($sock, CheckoutTest::build_request(uri => '/checkout-slow',
                                                    body => $CART));
        Time::HiRes::sleep(0.1 * CheckoutTest::slack());
        close $sock;    # gone while the payment step is still running
    }
    # past the step's 500 ms deadline
    Time::HiRes::sleep(0.7 * CheckoutTest::slack());
    my $sock = CheckoutTest::http_connect();
    for my $i (1 .. 3) {
        my $res = CheckoutTest::http_send_recv($sock,
            CheckoutTest::build_request(uri => '/checkout', body => $CART), 2);
        Test::More::is($res->{status}, 201,
                       "$name - checkout $i after the disconnects is 201")
            or Test::More::diag(Test::More::explain($res));
    }
    close $sock;
});

# A client that reads by Content-Length has the reply at the deadline, even
# though nginx cannot end a step served inside nginx itself early.
CheckoutTest::define_check(reply_at_deadline_of_unproxied_step => sub {
    my ($block) = @_;
    my $name = $block->name;
    my $res = CheckoutTest::post_checkout('{"customerId":"cus_1"}',
                                          uri => '/checkout', timeout => 3,
                                          close => 1);
    Test::More::is($res->{status}, 503, "$name - keepalive client: 503")
        or Test::More::diag(Test::More::explain($res));
    my $d = CheckoutTest::json_decode($res->{body} || '') || {};
    Test::More::is($d->{reason}, 'timeout', "$name - keepalive client: timeout");
    Test::More::cmp_ok($res->{elapsed}, "<", 0.6 * CheckoutTest::slack(),
        "$name - keepalive client: answered at the 200 ms deadline");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a 10 s backend is cut off at the step's 200 ms: 503 timeout, at once
--- config
    location = /checkout {
        checkout;
        checkout_timeout 2s;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=200ms;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_timeout"}}
--- timeout: 1
--- error_code: 503
--- response_headers_like
Content-Type: application/json
Cache-Control: no-store
Retry-After: 5
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=(19\d|[234]\d\d)(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "failed"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
step: "authorize"
reason: "timeout"
message =~ \S
retryable: true
--- error_log
upstream timed out
--- no_error_log
step-was-called



=== TEST 2: after a cut-off the keepalive connection serves the next checkout at once (pipelined)
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=200ms;
        checkout_step create    /_trap/orders;
    }
    location = /checkout-fast {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/ok;
        checkout_step create    /_svc/orders/ok;
    }
--- pipelined_requests eval
["POST /checkout\n{\"customerId\":\"cus_1\",\"payment\":{\"token\":\"tok_timeout\"}}",
 "POST /checkout-fast\n{\"customerId\":\"cus_1\",\"payment\":{\"token\":\"tok_visa\"}}"]
--- timeout: 1
--- error_code eval
[503, 201]
--- checkout_json eval
["status: \"failed\"\nreason: \"timeout\"\nstep: \"authorize\"",
 "status: \"confirmed\"\norderId: \"ord_123\""]
--- no_error_log
step-was-called



=== TEST 3: after a cut-off the keepalive connection serves the next checkout at once (one client, timed)
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=200ms;
        checkout_step create    /_trap/orders;
    }
    location = /checkout-fast {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/ok;
        checkout_step create    /_svc/orders/ok;
    }
--- request
POST /checkout-fast
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: keepalive_after_cutoff
--- error_log
upstream timed out
--- no_error_log
step-was-called



=== TEST 4: the same slow payment with on_timeout=pending is 202 pending_review, at once
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=200ms on_timeout=pending;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1","payment":{"method":"card","token":"tok_timeout"}}
--- timeout: 1
--- error_code: 202
--- response_headers_like
Retry-After: 5
Location: /checkout/chk_[A-Za-z0-9]{22}
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=(19\d|[234]\d\d)(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "pending_review"
step: "authorize"
nextCheckAfterSeconds: 5
statusUrl =~ ^/checkout/chk_[A-Za-z0-9]{22}$
--- error_log
upstream timed out
--- no_error_log
step-was-called



=== TEST 5: the budget runs out across three slow-ish steps: 504
--- config
    location = /checkout {
        checkout;
        checkout_timeout 500ms;
        checkout_step validate  /_svc/cart/slow;
        checkout_step authorize /_svc/pay/slow;
        checkout_step create    /_svc/orders/slow;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 504
--- response_headers_like
Content-Type: application/json
Retry-After: 5
Server-Timing: validate;dur=(29\d|3\d\d)(\.\d+)?,\s*authorize;dur=(1\d\d|2\d\d)(\.\d+)?,\s*total;dur=(4[89]\d|5\d\d|6\d\d)(\.\d+)?
--- checkout_json
status: "failed"
step: "authorize"
reason: "timeout"
retryable: true
--- error_log
upstream timed out



=== TEST 6: a step gets min(timeout, remaining budget): timeout=5s in a 300ms budget is 504 at 300 ms
--- config
    location = /checkout {
        checkout;
        checkout_timeout 300ms;
        checkout_step authorize /_svc/pay/sleep10 timeout=5s;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 504
--- response_headers_like
Server-Timing: authorize;dur=(29\d|[34]\d\d)(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_json
status: "failed"
step: "authorize"
reason: "timeout"
--- error_log
upstream timed out
--- no_error_log
step-was-called



=== TEST 7: a step without its own timeout is bounded by the budget (http-level checkout_timeout)
--- http_config
    checkout_timeout 250ms;
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/sleep10;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 504
--- checkout_json
status: "failed"
step: "authorize"
reason: "timeout"
--- no_error_log
step-was-called



=== TEST 8: a backend that sent half its reply and stalls is cut off too
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/partial timeout=200ms;
        checkout_step create    /_trap/orders;
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
upstream timed out
--- no_error_log
step-was-called



=== TEST 9: a step that is not proxied: the reply goes out at the deadline, the connection waits for the step
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_direct/slow timeout=200ms;
        checkout_step create    /_trap/orders;
    }
    location = /_direct/slow {
        internal;
        default_type application/json;
        echo_sleep 2;
        echo '{"status":"authorized"}';
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 5
--- error_code: 503
--- checkout_json
status: "failed"
step: "authorize"
reason: "timeout"
--- checkout_check: reply_at_deadline_of_unproxied_step
--- error_log
checkout step "authorize" timed out and is left to finish in the background
--- no_error_log
step-was-called



=== TEST 10: the budget starts when the body has been read, not when the request started
--- config
    location = /checkout {
        checkout;
        checkout_timeout 500ms;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request eval
[["POST /checkout\n{\"customerId\":", {value => "\"cus_1\"}", delay_before => 0.7}]]
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_123"
--- no_error_log
[error]



=== TEST 11: a client that gives up during a slow step leaves nginx healthy
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=1s;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1","payment":{"method":"card","token":"tok_timeout"}}
--- timeout: 0.3
--- abort
--- ignore_response
--- wait: 1.2
--- no_error_log
[alert]
[crit]
step-was-called



=== TEST 12: clients that disconnect mid-checkout, then checkouts on the same nginx work
--- config
    location = /checkout-slow {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=500ms;
        checkout_step create    /_trap/orders;
    }
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/ok;
        checkout_step create    /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: healthy_after_disconnect
--- wait: 0.2
--- no_error_log
[alert]
[crit]
step-was-called
