# The status endpoint (checkout_status): what GET /checkout/<id> answers
# after a checkout, for a state the worker changed, for ids that are unknown
# or not checkout ids at all, and when Redis is stopped or does not answer
# (README "Events, state and the status endpoint").
#
# A block either looks up a state it wrote itself (--- init, fixed ids), or
# runs a real checkout and then looks it up (--- checkout_check: lookup,
# with the sections below).

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use CheckoutRedis ();
use CheckoutEvents ();
use Test::More ();
use Time::HiRes qw(time sleep);

CheckoutEvents::setup();

# Well-formed ids: chk_ and 22 base62 characters.
our $Known   = 'chk_Status0000000000000001';
our $Unknown = 'chk_Unknown000000000000001';
our $Paused  = 'chk_Paused0000000000000001';

# Writes a state hash as the module and a worker would.
sub seed_state {
    my ($id, @fields) = @_;
    CheckoutRedis::cmd('HSET', "checkout:$id",
        status => 'confirmed', orderId => 'ord_77',
        created => '2026-01-02T03:04:05.678Z',
        updated => '2026-01-02T03:04:05.678Z',
        eventId => $id, @fields);
    CheckoutRedis::cmd('EXPIRE', "checkout:$id", 3600);
}

sub lookup {
    my ($id, %o) = @_;
    return CheckoutTest::http_request(method => 'GET',
                                      uri => ($o{prefix} // '/checkout/') . $id,
                                      close => 1, timeout => $o{timeout} || 3);
}

# After the block's checkout: --- lookup_init (Perl, $id is the checkout's
# id) runs, then GET --- lookup_prefix (default /checkout/) . $id must answer
# --- lookup_code (default 200), with --- lookup_headers ("Name: regex"
# lines, "Name:" alone: absent) and --- lookup_json (CheckoutEvents lines).
CheckoutTest::define_check(lookup => sub {
    my ($block, $body, $doc, $idx) = @_;
    my $name = $block->name;
    # a section's value for this reply (an array: one element per reply)
    my $pick = sub {
        my ($section) = @_;
        my $v = scalar $block->$section;
        return ref $v eq 'ARRAY' ? $v->[$idx] : $v;
    };
    my $id = ref $doc eq 'HASH' ? $doc->{checkoutId} // '' : '';
    Test::More::like($id, CheckoutTest::id_re(), "$name - the checkout has an id");

    if (defined(my $code = $pick->('lookup_init'))) {
        eval $code;
        Test::More::fail("$name - lookup_init: $@") if $@;
    }

    my $prefix = $pick->('lookup_prefix');
    $prefix =~ s/^\s+|\s+$//g if defined $prefix;
    my $res = lookup($id, prefix => $prefix);
    my $want = $pick->('lookup_code') // 200;
    $want =~ s/\s+//g;
    Test::More::is($res->{status}, $want, "$name - lookup status")
        or Test::More::diag($res->{error} // $res->{body});

    for my $line (split /\n/, $pick->('lookup_headers') // '') {
        next unless $line =~ /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/;
        my ($h, $re) = (lc $1, $2);
        if ($re eq '') {
            Test::More::ok(!exists $res->{headers}{$h},
                           "$name - lookup: no $h header");
        } else {
            Test::More::like($res->{headers}{$h} // '', qr/^(?:$re)$/,
                             "$name - lookup header $h");
        }
    }

    if (defined(my $spec = $pick->('lookup_json'))) {
        my $d = CheckoutTest::json_decode($res->{body} // '');
        Test::More::ok(ref $d eq 'HASH', "$name - lookup reply is a JSON object")
            or Test::More::diag("body: " . ($res->{body} // '<none>'));
        CheckoutEvents::check_lines("$name - lookup", $d, $spec, $id)
            if ref $d eq 'HASH';
    }
});

# Malformed ids whose hash does exist (--- init wrote them): still 404, so
# the answer did not come from Redis; and Redis saw no HGETALL at all.
CheckoutTest::define_check(no_hgetall => sub {
    my ($block) = @_;
    my $stats = CheckoutRedis::cmd('INFO', 'commandstats');
    Test::More::unlike($stats, qr/cmdstat_hgetall:/,
                       $block->name . " - Redis got no HGETALL")
        or Test::More::diag($stats);
});

# The block's lookup answered 200: the worker's connection is up.  Redis is
# then paused (SIGSTOP): a lookup answers 503 once checkout_redis_timeout
# (--- redis_timeout_s, default 0.1) has passed, not much later; a second one at the latest after as
# long (there is no trusted connection any more: at once is fine).  Once
# Redis runs again, lookups answer from it again (the worker reconnected).
CheckoutTest::define_check(paused_then_resumed => sub {
    my ($block) = @_;
    my $name = $block->name;
    my $margin = 0.4 * CheckoutTest::slack();
    my $timeout = ($block->redis_timeout_s // 0.1) * CheckoutTest::slack();

    CheckoutRedis::pause();
    for my $i (1 .. 2) {
        my $res = lookup($Paused, timeout => 2);
        Test::More::is($res->{status}, 503, "$name - paused: lookup $i is 503");
        my $min = $i == 1 ? $timeout - 0.02 : 0;
        Test::More::ok($res->{elapsed} >= $min
                       && $res->{elapsed} <= $timeout + $margin,
                       "$name - paused: lookup $i answers "
                       . ($i == 1 ? "after checkout_redis_timeout"
                                  : "within checkout_redis_timeout"))
            or Test::More::diag("elapsed: $res->{elapsed}");
        Test::More::is($res->{headers}{'retry-after'}, '1',
                       "$name - paused: lookup $i has Retry-After: 1");
        my $d = CheckoutTest::json_decode($res->{body} // '') || {};
        Test::More::is($d->{error}, 'unavailable',
                       "$name - paused: lookup $i says unavailable");
    }

    CheckoutRedis::resume();
    my $t0 = time;
    my $last;
    my $ok = CheckoutRedis::wait_for(sub {
        $last = lookup($Paused, timeout => 2);
        ($last->{status} // 0) == 200;
    }, 8);
    Test::More::ok($ok, "$name - after resume a lookup answers 200 again")
        or Test::More::diag("last: " . ($last->{status} // $last->{error})
                            . " " . ($last->{body} // ''));
    my $d = CheckoutTest::json_decode($last->{body} // '') || {};
    Test::More::is($d->{status}, 'confirmed',
                   "$name - after resume the state is read from Redis");
    Test::More::diag(sprintf "reconnected %.2f s after resume", time - $t0)
        if $ENV{TEST_VERBOSE};
});

# Redis was restarted (--- init): within a few seconds (the reconnect
# backoff starts at 100 ms) a lookup answers 200 from the new server.
CheckoutTest::define_check(lookup_after_restart => sub {
    my ($block) = @_;
    my $name = $block->name;
    my $last;
    my $ok = CheckoutRedis::wait_for(sub {
        $last = lookup($Known, timeout => 2);
        ($last->{status} // 0) == 200;
    }, 5);
    Test::More::ok($ok, "$name - a lookup answers 200 after the restart")
        or Test::More::diag("last: " . ($last->{status} // $last->{error}));
    my $d = CheckoutTest::json_decode($last->{body} // '') || {};
    Test::More::is($d->{orderId}, 'ord_77', "$name - read from the new server");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: after a confirmed checkout: 200 with checkoutId, status, orderId and no tasks
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: lookup
--- lookup_headers
Content-Type: application/json
Retry-After:
--- lookup_json
. keys: ["checkoutId","status","orderId","tasks"]
checkoutId: "$checkoutId"
status: "confirmed"
orderId: "ord_123"
tasks: {}
--- no_error_log
[error]
[warn]



=== TEST 2: the reply's Location is the status URL
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    location = /api/checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location ~ ^/api/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- request
POST /api/checkout
{"customerId":"cus_1"}
--- error_code: 201
--- response_headers_like
Location: /api/checkout/chk_[A-Za-z0-9]{22}
--- checkout_check: lookup
--- lookup_prefix: /api/checkout/
--- lookup_json
checkoutId: "$checkoutId"
status: "confirmed"
--- no_error_log
[error]



=== TEST 3: pending_review: nextCheckAfterSeconds from checkout_retry_after, no orderId
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    checkout_retry_after 3s;
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/503 on_error=pending;
        checkout_step create    /_trap/orders;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 202
--- checkout_json
status: "pending_review"
nextCheckAfterSeconds: 3
--- checkout_check: lookup
--- lookup_json
. keys: ["checkoutId","status","tasks","nextCheckAfterSeconds"]
checkoutId: "$checkoutId"
status: "pending_review"
tasks: {}
nextCheckAfterSeconds: 3
--- no_error_log
step-was-called



=== TEST 4: pending_review with the default checkout_retry_after: nextCheckAfterSeconds 5
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/sleep10 timeout=100ms on_timeout=pending;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 2
--- error_code: 202
--- checkout_check: lookup
--- lookup_json
status: "pending_review"
nextCheckAfterSeconds: 5
orderId !



=== TEST 5: declined and failed: the status, no orderId, no nextCheckAfterSeconds
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/decline;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 402
--- checkout_check: lookup
--- lookup_json
. keys: ["checkoutId","status","tasks"]
status: "declined"
tasks: {}



=== TEST 6: requires_action and failed leave a state that the endpoint reads
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/3ds;
    }
    location = /checkout-f {
        checkout;
        checkout_step authorize /_svc/pay/500;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- request eval
["POST /checkout\n{\"customerId\":\"cus_1\"}",
 "POST /checkout-f\n{\"customerId\":\"cus_1\"}"]
--- error_code eval
[202, 503]
--- checkout_check: lookup
--- lookup_json eval
["status: \"requires_action\"\ntasks: {}\norderId !\nnextCheckAfterSeconds !",
 "status: \"failed\"\ntasks: {}\norderId !\nnextCheckAfterSeconds !"]



=== TEST 7: a task field the worker wrote into the hash shows in tasks
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: lookup
--- lookup_init
CheckoutRedis::cmd('HSET', "checkout:$id", 'receipt', 'done');
--- lookup_json
. keys: ["checkoutId","status","orderId","tasks"]
status: "confirmed"
orderId: "ord_123"
tasks: {"receipt":"done"}
--- no_error_log
[error]



=== TEST 8: a state written by the worker: several tasks; created, updated, eventId and step stay out of the reply
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- init
main::seed_state($main::Known, receipt => 'done', fulfillment => 'shipped',
                 'loyalty-points' => 'failed: "quota"', step => 'create');
--- request eval
"GET /checkout/$::Known"
--- error_code: 200
--- response_headers
Content-Type: application/json
--- checkout_json
checkoutId: "chk_Status0000000000000001"
status: "confirmed"
orderId: "ord_77"
tasks: {"receipt":"done","fulfillment":"shipped","loyalty-points":"failed: \"quota\""}
created !
updated !
eventId !
step !
nextCheckAfterSeconds !
--- no_error_log
[error]



=== TEST 9: a reconciled pending_review: the worker's confirmed and orderId, no nextCheckAfterSeconds
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/503 on_error=pending;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 202
--- checkout_check: lookup
--- lookup_init
CheckoutRedis::cmd('HSET', "checkout:$id", status => 'confirmed',
                   orderId => 'ord_late', receipt => 'pending');
--- lookup_json
. keys: ["checkoutId","status","orderId","tasks"]
status: "confirmed"
orderId: "ord_late"
tasks: {"receipt":"pending"}



=== TEST 10: an unknown but well-formed id: 404 not_found
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- init
main::seed_state($main::Known);
--- request eval
"GET /checkout/$::Unknown"
--- error_code: 404
--- response_headers
Content-Type: application/json
--- checkout_json
error: "not_found"
--- no_error_log
[error]



=== TEST 11: malformed ids are 404 without a Redis lookup, even when such a hash exists
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- init
for my $id ('chk_Short', 'chk_Status000000000000000', 'chk_Status00000000000000011',
            'chk_Status00000000000000-1', 'chk_Status00000000000000_1',
            'chk_Status00000000000000!1', 'chx_Status0000000000000001',
            'CHK_Status0000000000000001', 'Status0000000000000001abcd',
            'chk_Status0000000000000001 ') {
    main::seed_state($id);
}
CheckoutRedis::cmd('CONFIG', 'RESETSTAT');
--- request eval
["GET /checkout/chk_Short",
 "GET /checkout/chk_Status000000000000000",
 "GET /checkout/chk_Status00000000000000011",
 "GET /checkout/chk_Status00000000000000-1",
 "GET /checkout/chk_Status00000000000000_1",
 "GET /checkout/chk_Status00000000000000%211",
 "GET /checkout/chx_Status0000000000000001",
 "GET /checkout/CHK_Status0000000000000001",
 "GET /checkout/Status0000000000000001abcd",
 "GET /checkout/chk_Status0000000000000001%20"]
--- error_code eval
[(404) x 10]
--- checkout_json eval
[("error: \"not_found\"") x 10]
--- checkout_check eval
[("") x 9, "no_hgetall"]
--- no_error_log
[error]



=== TEST 12: a variable that is not found: 404
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /status {
        checkout_status $arg_id;
    }
--- init
main::seed_state($main::Known);
--- request eval
["GET /status", "GET /status?id=$::Known"]
--- error_code eval
[404, 200]
--- checkout_json eval
["error: \"not_found\"", "status: \"confirmed\"\norderId: \"ord_77\""]



=== TEST 13: POST to the status endpoint: 405
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- init
main::seed_state($main::Known);
--- request eval
"POST /checkout/$::Known\n{\"status\":\"confirmed\"}"
--- error_code: 405
--- response_headers
Content-Type: application/json
--- checkout_json
status !
orderId !



=== TEST 14: Redis stopped: 503 unavailable with Retry-After: 1, at once
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- init
CheckoutRedis::stop();
--- request eval
["GET /checkout/$::Known", "GET /checkout/$::Known"]
--- timeout: 1
--- error_code eval
[503, 503]
--- response_headers eval
["Retry-After: 1\nContent-Type: application/json",
 "Retry-After: 1\nContent-Type: application/json"]
--- checkout_json eval
["error: \"unavailable\"", "error: \"unavailable\""]
--- no_error_log
[crit]
[alert]



=== TEST 15: Redis stopped: a malformed id is still 404, not 503
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- init
CheckoutRedis::stop();
--- request
GET /checkout/chk_short
--- timeout: 1
--- error_code: 404
--- checkout_json
error: "not_found"



=== TEST 16: Redis paused: 503 within checkout_redis_timeout, then answers again after resume
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    checkout_redis_timeout 300ms;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- init
main::seed_state($main::Paused);
--- request eval
"GET /checkout/$::Paused"
--- error_code: 200
--- checkout_json
status: "confirmed"
--- redis_timeout_s: 0.3
--- checkout_check: paused_then_resumed
--- no_error_log
[crit]
[alert]



=== TEST 17: Redis paused, default checkout_redis_timeout (100ms): 503 within it; after resume 200
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_status $cid;
    }
--- init
main::seed_state($main::Paused);
--- request eval
"GET /checkout/$::Paused"
--- error_code: 200
--- checkout_check: paused_then_resumed
--- no_error_log
[crit]
[alert]



=== TEST 18: Redis restarted: lookups answer again once the worker has reconnected
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- init
CheckoutRedis::restart();
main::seed_state($main::Known);
--- request eval
"GET /checkout/$::Known"
--- timeout: 6
--- error_code_like: ^(200|503)$
--- checkout_check: lookup_after_restart



=== TEST 19: checkout_redis db=2: the endpoint reads the database the checkout wrote
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=2;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: lookup
--- lookup_json
status: "confirmed"
orderId: "ord_123"
--- no_error_log
[error]
