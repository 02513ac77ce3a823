# The request path in nginx's debug log: one "checkout <hop>" line at each
# step of a checkout (the nginx dev guide's convention), so that an operator
# with a --with-debug nginx (Debian's is one) and "error_log ... debug" can
# follow a checkout through the gate, its steps, the publish script (or the
# spool) and the reply.

# an nginx without debug logging has no such lines to show
BEGIN {
    my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
    if (`$nginx -V 2>&1` !~ /--with-debug/) {
        require Test::More;
        Test::More::plan(skip_all => "$nginx is built without --with-debug");
    }
}

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use CheckoutEvents ();

CheckoutEvents::setup();

run_tests();

__DATA__

=== TEST 1: a confirmed checkout with an Idempotency-Key: gate, steps, publish, reply
--- log_level: debug
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_svc/cart/ok;
        checkout_step create    /_svc/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: debug-log-1
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- redis_event
ce_type: "OrderConfirmed"
--- error_log eval
[
    qr/checkout begin: chk_[0-9A-Za-z]{22}/,
    qr/checkout redis command: EVAL, timeout \d+/,
    qr/checkout gate: "checkout:idem:\/checkout:debug-log-1", give up at \d+/,
    qr/checkout redis reply: received/,
    "checkout gate done: new",
    qr/checkout step "validate" started, "\/_svc\/cart\/ok", budget \d+/,
    qr/checkout step "create" done, verdict 0/,
    qr/checkout decide: step "create", verdict 0/,
    qr/checkout publish: confirmed, 37 arguments/,
    "checkout publish done: reply",
    "checkout reply: 201 confirmed",
]
--- no_error_log
[error]
checkout spool write



=== TEST 2: Redis unreachable: the event goes to the spool, the debug log says so
--- log_level: debug
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:1;
        checkout_step create /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- error_log eval
[
    "checkout redis connect: 127.0.0.1:1",
    qr/checkout spool write: chk_[0-9A-Za-z]{22}, 37 arguments/,
    "event spooled",
    "checkout reply: 201 confirmed",
]
--- no_error_log
checkout publish done



=== TEST 3: bad input is said in the debug log with its error code
--- log_level: debug
--- config
    location = /checkout {
        checkout;
        checkout_step create /_svc/orders/ok;
    }
--- request
GET /checkout
--- error_code: 405
--- error_log
checkout reply invalid: 405 method_not_allowed
--- no_error_log
[error]
checkout begin
