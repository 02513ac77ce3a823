# Events and state in Redis: what a checkout leaves in the stream and in its
# state hash for each outcome (README "Events, state and the status
# endpoint"), the directives that shape them (checkout_redis, checkout_stream,
# checkout_event, checkout_state_ttl, checkout_spool) and the configurations
# nginx must refuse.
#
# Each test file has its own redis-server (t/lib/CheckoutRedis.pm), emptied
# before every block, and its own spool directory (t/lib/CheckoutEvents.pm).
# The event is written before the reply, so every assertion on Redis is made
# right after the reply, without waiting.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use CheckoutRedis ();
use CheckoutEvents ();
use Test::More ();

CheckoutEvents::setup();

our $Cart = '{"customerId":"cus_1","currency":"EUR",'
          . '"items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],'
          . '"payment":{"method":"card","token":"tok_visa"},'
          . '"note":"Gr\u00fc\u00dfe, \"quoted\" \\\\ and a\ttab","gift":false,"coupon":null}';

sub reply_id {
    my ($doc) = @_;
    return ref $doc eq 'HASH' ? $doc->{checkoutId} // '' : '';
}

# The default stream stays untouched when the block names another one.
CheckoutTest::define_check(default_stream_untouched => sub {
    my ($block) = @_;
    Test::More::is(CheckoutRedis::cmd('EXISTS', 'checkout:events'), 0,
                   $block->name . " - nothing in checkout:events");
});

# Ten checkouts in all into a stream with maxlen=3 (and nodes of 2 entries,
# set by the block's --- init, so that "MAXLEN ~" can trim at all): the
# stream holds about 3 entries, the newest ones.
CheckoutTest::define_check(maxlen_caps_the_stream => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $last = reply_id($doc);
    my @first = CheckoutRedis::xrange('capped');
    Test::More::ok(@first == 1 && $first[0][1]{ce_id} eq $last,
                   "$name - the first checkout's entry is in the stream");
    for (2 .. 10) {
        my $res = CheckoutTest::post_checkout('{"customerId":"cus_1"}',
                                              close => 1);
        Test::More::is($res->{status}, 201, "$name - checkout $_ answered")
            or Test::More::diag($res->{error} // $res->{body});
        my $d = CheckoutTest::json_decode($res->{body} // '');
        $last = reply_id($d);
    }
    my $info = { @{ CheckoutRedis::cmd('XINFO', 'STREAM', 'capped') } };
    Test::More::is($info->{'entries-added'}, 10,
                   "$name - ten entries were appended");
    my $len = CheckoutRedis::xlen('capped');
    Test::More::ok($len >= 3 && $len <= 5,
                   "$name - the stream is trimmed to about 3 entries")
        or Test::More::diag("XLEN capped: $len");
    my @e = CheckoutRedis::xrange('capped');
    Test::More::is($e[-1][1]{ce_id}, $last,
                   "$name - the newest entry is the last checkout's");
});

# Without maxlen= nothing is trimmed, even with tiny stream nodes.
CheckoutTest::define_check(no_maxlen_no_trim => sub {
    my ($block) = @_;
    my $name = $block->name;
    for (2 .. 6) {
        my $res = CheckoutTest::post_checkout('{"customerId":"cus_1"}',
                                              close => 1);
        Test::More::is($res->{status}, 201, "$name - checkout $_ answered");
    }
    Test::More::is(CheckoutRedis::xlen('orders:stream'), 6,
                   "$name - all six entries are kept");
});

# nginx -t on the block's configuration warns about maxlen= and passes.
CheckoutTest::define_check(nginx_t_warns => sub {
    my ($block) = @_;
    my $name = $block->name;
    my $bin = $Test::Nginx::Util::NginxBinary || $ENV{TEST_NGINX_BINARY}
              || 'nginx';
    my $root = $Test::Nginx::Util::ServRoot;
    my $conf = $Test::Nginx::Util::ConfFile;
    my $out = `'$bin' -p '$root/' -c '$conf' -t 2>&1`;
    Test::More::is($?, 0, "$name - nginx -t passes");
    Test::More::like($out,
        qr/\[warn\][^\n]*checkout_stream[^\n]*\bin\s+\S*nginx\.conf:\d+/,
        "$name - nginx -t warns about checkout_stream maxlen=")
        or Test::More::diag($out);
});

# db=3: the entry and the state are in database 3, database 0 is empty.
CheckoutTest::define_check(in_db_3 => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $id = reply_id($doc);
    Test::More::is(CheckoutRedis::cmd('DBSIZE'), 0,
                   "$name - database 0 is empty");
    CheckoutRedis::cmd('SELECT', 3);
    my (@e, $state);
    my $ok = eval {
        @e = CheckoutRedis::xrange('checkout:events');
        $state = CheckoutRedis::hgetall("checkout:$id");
        1;
    };
    my $err = $@;
    CheckoutRedis::cmd('SELECT', 0);
    die $err unless $ok;
    Test::More::is(scalar(grep { $_->[1]{ce_id} eq $id } @e), 1,
                   "$name - database 3 has the checkout's event");
    Test::More::is($state->{status}, 'confirmed',
                   "$name - database 3 has the checkout's state");
});

# The event went to the spool: a spool file holds the checkout's command.
CheckoutTest::define_check(spooled => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $id = reply_id($doc);
    my @files = CheckoutEvents::spool_files();
    Test::More::ok(scalar(grep { /^redis-\d+-\d+\.spool$/ } @files),
                   "$name - the spool dir has a redis-N-PID.spool file")
        or Test::More::diag("spool dir: @files");
    Test::More::ok(scalar(grep { index($_, $id) >= 0 }
                          CheckoutEvents::spool_lines()),
                   "$name - a spool line holds the checkout $id");
    Test::More::is(CheckoutRedis::cmd('EXISTS', 'checkout:events'), 0,
                   "$name - nothing reached the stream");
});

# Redis clients other than this test's own connection.
sub other_clients {
    my $me = CheckoutRedis::cmd('CLIENT', 'ID');
    return grep { /\bid=(\d+)\b/ && $1 != $me }
           split /\n/, CheckoutRedis::cmd('CLIENT', 'LIST');
}

# 40 checkouts at once on 20 connections (the block's own came first): each
# has its own entry, exactly once, and its state; the worker still has one
# connection to Redis (its requests are pipelined on it).
CheckoutTest::define_check(concurrent_once => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my @ids = (reply_id($doc));
    my @res = CheckoutTest::run_clients(
        conns => 20, requests => 2, timeout => 10,
        make => sub {
            my ($conn, $seq) = @_;
            return (method => 'POST', uri => '/checkout',
                    body => qq({"customerId":"cus_$conn","seq":$seq}));
        });
    my @ok = grep { ($_->{status} // 0) == 201 } @res;
    Test::More::is(scalar @ok, 40, "$name - 40 checkouts answered 201");
    for my $r (@ok) {
        my $d = CheckoutTest::json_decode($r->{body}) || {};
        push @ids, $d->{checkoutId};
    }
    my $counts = CheckoutEvents::counts();
    CheckoutEvents::exactly_once("$name - 41 events, each exactly once",
                                 \@ids, $counts);
    Test::More::is(scalar keys %$counts, 41, "$name - 41 entries in all");
    my @states = grep { (CheckoutRedis::hgetall("checkout:$_")->{status} // '')
                        eq 'confirmed' } @ids;
    Test::More::is(scalar @states, 41, "$name - 41 states");
    # the cart of each event is the one its client sent
    my %cust;
    for my $e (@{ CheckoutEvents::entries() }) {
        my $d = CheckoutTest::json_decode($e->[1]{data}) || {};
        $cust{ ($d->{cart}{customerId} // '') . '/' . ($d->{cart}{seq} // '-') }++;
    }
    my @dup = grep { $cust{$_} != 1 } keys %cust;
    Test::More::is(scalar @dup, 0, "$name - every event has its own client's cart");
    my @nginx = other_clients();
    Test::More::is(scalar @nginx, 1, "$name - one connection to Redis (one worker)")
        or Test::More::diag(join "\n", @nginx);
});

# Bad input is refused before any step: nothing at all in Redis.
CheckoutTest::define_check(redis_empty => sub {
    my ($block) = @_;
    Test::More::is(CheckoutRedis::cmd('DBSIZE'), 0,
                   $block->name . " - Redis is empty");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: confirmed: one entry with every CloudEvents field, and the state hash
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/ok;
        checkout_step create    /_svc/orders/ok;
    }
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_123"
--- redis_event
. keys: ["ce_specversion","ce_id","ce_type","ce_source","ce_time","ce_subject","ce_schemaversion","content-type","data"]
ce_specversion: "1.0"
ce_id: "$checkoutId"
ce_subject: "$checkoutId"
ce_type: "OrderConfirmed"
ce_source: "/checkout"
ce_time recent-ms 5
ce_schemaversion: "1"
content-type: "application/json"
data keys: ["checkoutId","status","step","cart","results"]
data.checkoutId: "$checkoutId"
data.status: "confirmed"
data.step: "create"
data.cart: {"customerId":"cus_1","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_visa"},"note":"Gr\u00fc\u00dfe, \"quoted\" \\ and a\ttab","gift":false,"coupon":null}
data.results: {"validate":{"total":2500,"currency":"EUR"},"authorize":{"status":"authorized","authorizationId":"auth_1","amount":2500},"create":{"orderId":"ord_123","total":2500,"currency":"EUR"}}
--- redis_state
. keys: ["status","orderId","created","updated","eventId","_ttl"]
status: "confirmed"
orderId: "ord_123"
eventId: "$checkoutId"
created recent 5
updated recent 5
# checkout_state_ttl 7d by default
_ttl between 604790 604800
--- no_error_log
[error]
[warn]



=== TEST 2: ce_source is the request's URI
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /api/v2/checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /api/v2/checkout
{"customerId":"cus_1"}
--- error_code: 201
--- redis_event
ce_source: "/api/v2/checkout"
ce_type: "OrderConfirmed"
data.cart: {"customerId":"cus_1"}
data.results keys: ["validate","create"]
--- no_error_log
[error]



=== TEST 3: pending_review: CheckoutPendingReview, the step that timed out, the results before it
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=200ms on_timeout=pending;
        checkout_step create    /_trap/orders;
    }
--- request eval
"POST /checkout\n$::Cart"
--- timeout: 2
--- error_code: 202
--- checkout_json
status: "pending_review"
--- redis_event
ce_specversion: "1.0"
ce_id: "$checkoutId"
ce_subject: "$checkoutId"
ce_type: "CheckoutPendingReview"
ce_source: "/checkout"
ce_time recent-ms 5
ce_schemaversion: "1"
content-type: "application/json"
data.checkoutId: "$checkoutId"
data.status: "pending_review"
data.step: "authorize"
data.cart.payment: {"method":"card","token":"tok_visa"}
data.results: {"validate":{"total":2500,"currency":"EUR"}}
--- redis_state
status: "pending_review"
step: "authorize"
eventId: "$checkoutId"
orderId !
created recent 5
updated recent 5
--- no_error_log
step-was-called



=== TEST 4: declined: CheckoutDeclined, data.step is the declining step
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/decline;
        checkout_step create    /_trap/orders;
    }
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 402
--- checkout_json
status: "declined"
step: "authorize"
--- redis_event
ce_specversion: "1.0"
ce_id: "$checkoutId"
ce_subject: "$checkoutId"
ce_type: "CheckoutDeclined"
ce_source: "/checkout"
ce_time recent-ms 5
ce_schemaversion: "1"
content-type: "application/json"
data.checkoutId: "$checkoutId"
data.status: "declined"
data.step: "authorize"
data.results.validate: {"total":2500,"currency":"EUR"}
data.results.authorize.reason: "card_declined"
data.results.create !
--- redis_state
status: "declined"
step: "authorize"
eventId: "$checkoutId"
orderId !
--- no_error_log
step-was-called



=== TEST 5: declined by the first step: data.step is that step, no results after it
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate  /_svc/cart/out_of_stock;
        checkout_step authorize /_trap/pay;
    }
--- request
POST /checkout
{"customerId":"cus_1","items":[{"sku":"sku_out_of_stock","quantity":1}]}
--- error_code: 409
--- redis_event
ce_type: "CheckoutDeclined"
data.status: "declined"
data.step: "validate"
data.cart: {"customerId":"cus_1","items":[{"sku":"sku_out_of_stock","quantity":1}]}
data.results.authorize !
--- redis_state
status: "declined"
step: "validate"
--- no_error_log
step-was-called



=== TEST 6: requires_action: no entry, a state hash with status and step
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_state_ttl 10m;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/3ds;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 202
--- checkout_json
status: "requires_action"
--- redis_no_event
--- redis_state
status: "requires_action"
step: "authorize"
orderId !
created recent 5
updated recent 5
_ttl between 590 600
--- no_error_log
[error]
step-was-called



=== TEST 7: failed: no entry, a state hash with status and step
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/503;
        checkout_step create    /_trap/orders;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- checkout_json
status: "failed"
--- redis_no_event
--- redis_state
status: "failed"
step: "authorize"
orderId !
created recent 5
--- no_error_log
step-was-called



=== TEST 8: failed at the budget (504): no entry, state failed
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_timeout 200ms;
        checkout_step authorize /_svc/pay/sleep10;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 2
--- error_code: 504
--- redis_no_event
--- redis_state
status: "failed"
step: "authorize"



=== TEST 9: bad input writes nothing to Redis
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate /_trap/cart;
    }
--- request
POST /checkout
[1,2,3]
--- error_code: 422
--- checkout_json
error: "not_an_object"
--- checkout_check: redis_empty
--- no_error_log
step-was-called



=== TEST 10: checkout_event confirmed OrderPlaced, inherited from the server level
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    checkout_event confirmed OrderPlaced;
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- redis_event
ce_type: "OrderPlaced"
data.status: "confirmed"
--- no_error_log
[error]



=== TEST 11: checkout_event for declined and pending_review; a location's own wins over http's
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_event declined PaymentRefused;
    checkout_event pending_review PaymentUnknown;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_event declined CardRefused;
        checkout_step authorize /_svc/pay/decline;
    }
    location = /checkout2 {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step authorize /_svc/pay/503 on_error=pending;
    }
    location = /checkout3 {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step authorize /_svc/pay/decline;
    }
--- request eval
["POST /checkout\n{\"customerId\":\"cus_1\"}",
 "POST /checkout2\n{\"customerId\":\"cus_1\"}",
 "POST /checkout3\n{\"customerId\":\"cus_1\"}"]
--- error_code eval
[402, 202, 402]
--- redis_event eval
["ce_type: \"CardRefused\"\nce_source: \"/checkout\"",
 "ce_type: \"PaymentUnknown\"\nce_source: \"/checkout2\"",
 "ce_type: \"PaymentRefused\"\nce_source: \"/checkout3\""]



=== TEST 12: checkout_stream NAME: the entry goes there; no warning without maxlen=, nothing trimmed
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_stream orders:stream;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- init
CheckoutRedis::cmd('CONFIG', 'SET', 'stream-node-max-entries', 2);
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- redis_stream: orders:stream
--- redis_event
ce_id: "$checkoutId"
ce_type: "OrderConfirmed"
--- checkout_check: default_stream_untouched no_maxlen_no_trim
--- no_error_log
[warn]
[error]



=== TEST 13: checkout_stream maxlen=: a warning at startup (and from nginx -t), the cap applied
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_stream capped maxlen=3;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- init
CheckoutRedis::cmd('CONFIG', 'SET', 'stream-node-max-entries', 2);
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: nginx_t_warns maxlen_caps_the_stream
--- error_log eval
qr/\[warn\].*checkout_stream.*\bin\s+\S*nginx\.conf:\d+/
--- no_error_log
[error]



=== TEST 14: checkout_state_ttl from the http level sets the state's TTL
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_state_ttl 1h;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- redis_state
status: "confirmed"
_ttl between 3590 3600
--- no_error_log
[error]



=== TEST 15: checkout_redis at the server level, over the unix socket
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    checkout_redis unix:$TEST_NGINX_REDIS_UNIX;
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- redis_event
ce_type: "OrderConfirmed"
--- redis_state
status: "confirmed"
orderId: "ord_123"
--- no_error_log
[error]



=== TEST 16: checkout_redis db=3: the entry and the state land in database 3, not 0
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=3;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: in_db_3
--- no_error_log
[error]



=== TEST 17: checkout_redis password= against a server with requirepass
--- redis_requirepass: s3cret-pass
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT password=s3cret-pass;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- redis_event
ce_type: "OrderConfirmed"
--- redis_state
status: "confirmed"
--- no_error_log
[error]



=== TEST 18: a wrong password: the Redis error is logged, the checkout still answers, its event is spooled
--- redis_requirepass: s3cret-pass
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT password=wrong;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_123"
--- checkout_check: spooled
--- error_log eval
[qr/\[error\].*(?:WRONGPASS|invalid password|invalid username-password)/,
 qr/\[warn\].*event spooled/]
--- no_error_log
[crit]
[alert]



=== TEST 19: no password against a server with requirepass: the NOAUTH error is logged, the event spooled
--- redis_requirepass: s3cret-pass
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 201
--- checkout_check: spooled
--- error_log eval
[qr/\[error\].*NOAUTH/,
 qr/\[warn\].*event spooled/]
--- no_error_log
[crit]
[alert]



=== TEST 20: 40 concurrent checkouts: each its own entry, once; one Redis connection per worker
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_first"}
--- error_code: 201
--- checkout_check: concurrent_once
--- no_error_log
[error]
[warn]



=== TEST 21: checkout_redis with a host name (resolved when the configuration is read)
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis localhost:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- redis_event
ce_type: "OrderConfirmed"
--- no_error_log
[error]
[warn]



=== TEST 22: checkout_redis: a bad port
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:notaport;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/127\.0\.0\.1:notaport/, 'checkout_redis 127.0.0.1:notaport')



=== TEST 23: checkout_redis: a host that does not resolve
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis no-such-host.invalid:6379;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/no-such-host\.invalid/, 'checkout_redis no-such-host.invalid:6379')



=== TEST 24: checkout_redis: a bad db=
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=abc;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/db=abc/, 'db=abc')



=== TEST 25: checkout_redis: a negative db=
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=-1;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/db=-1/, 'db=-1')



=== TEST 26: checkout_redis: an unknown parameter
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=1s;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/timeout=1s/, 'timeout=1s')



=== TEST 27: checkout_event: an outcome that publishes no event
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_event requires_action ActionRequired;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/requires_action/, 'checkout_event requires_action ActionRequired')



=== TEST 28: checkout_event: an unknown outcome
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    checkout_event refunded OrderRefunded;
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/refunded/, 'checkout_event refunded OrderRefunded')



=== TEST 29: checkout_stream: maxlen=0
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_stream events maxlen=0;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/maxlen=0/, 'checkout_stream events maxlen=0')



=== TEST 30: checkout_stream: maxlen= not a number
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_stream events maxlen=lots;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/maxlen=lots/, 'checkout_stream events maxlen=lots')



=== TEST 31: checkout_stream: an unknown parameter
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_stream events minid=5;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/minid=5/, 'checkout_stream events minid=5')



=== TEST 32: checkout with checkout_redis but no checkout_spool
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
qr/\[emerg\].*checkout_spool.*\bin\s+\S*nginx\.conf:\d+/



=== TEST 33: checkout_status without checkout_redis
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- must_die
--- error_log eval
qr/\[emerg\].*checkout_status.*checkout_redis.*\bin\s+\S*nginx\.conf:\d+/



=== TEST 34: checkout_status with something that is not a variable
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status cid;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/cid/, 'checkout_status cid')



=== TEST 35: checkout_spool is an http-level directive
--- http_config
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_spool /tmp;
        checkout_step validate /_svc/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/checkout_spool/, 'checkout_spool /tmp')
