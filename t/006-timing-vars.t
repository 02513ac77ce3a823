# Server-Timing on every reply, and the variables $checkout_id,
# $checkout_outcome, $checkout_step_timings: exposed with add_header here, and
# written by an access log with log_format (read back by a check).

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use CheckoutProc ();
use Test::More ();
use File::Temp ();
use Time::HiRes ();

our $LOGDIR = File::Temp::tempdir('checkout-log-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0777, $LOGDIR;
$ENV{TEST_NGINX_CHECKOUT_LOG} = "$LOGDIR/checkout.log";

CheckoutTest::use_mock_services();

my $ID = CheckoutTest::id_re();

sub timings_of {
    my ($server_timing) = @_;
    my %t;
    for my $m (split /\s*,\s*/, $server_timing || '') {
        my ($n, $d) = $m =~ /^([^;\s]+)\s*;.*?\bdur=([0-9.]+)/ or next;
        $t{$n} = $d;
    }
    return \%t;
}

# Same config, a fresh checkout: the headers against the body.
CheckoutTest::define_check(vars_match_reply => sub {
    my ($block) = @_;
    my $name = $block->name;
    my ($uri, $body) = $block->request =~ m{^\s*POST\s+(\S+)[^\n]*\n(.*)\z}s;
    my $res = CheckoutTest::post_checkout($body, uri => $uri, close => 1);
    my $d = CheckoutTest::json_decode($res->{body} || '') || {};
    my $h = $res->{headers};
    Test::More::like($d->{checkoutId} || '', $ID, "$name - reply has an id");
    Test::More::is($h->{'x-checkout-id'}, $d->{checkoutId},
                   "$name - \$checkout_id is the reply's checkoutId");
    Test::More::is($h->{'x-outcome'}, $d->{status},
                   "$name - \$checkout_outcome is the reply's status");

    my $st = timings_of($h->{'server-timing'});
    my %vt = map { /^(.+):([0-9.]+)$/ ? ($1 => $2) : () }
             split /,/, $h->{'x-step-timings'} || '';
    my @steps = grep { $_ ne 'total' } sort keys %$st;
    Test::More::is(join(',', sort keys %vt), join(',', @steps),
                   "$name - the same steps in Server-Timing and \$checkout_step_timings");
    for my $s (@steps) {
        next unless defined $vt{$s};
        Test::More::cmp_ok(abs($st->{$s} - 1000 * $vt{$s}), '<=', 2,
                           "$name - $s: dur=$st->{$s} ms matches $vt{$s} s");
        Test::More::cmp_ok($st->{total} || 0, '>=', $st->{$s} - 1,
                           "$name - total is not less than $s");
    }
});

# The access log's lines, once there are $want of them (or 2 s passed).
sub read_log_lines {
    my ($want) = @_;
    my @lines;
    CheckoutProc::wait_for(sub {
        open my $in, '<', $ENV{TEST_NGINX_CHECKOUT_LOG} or return 0;
        @lines = <$in>;
        @lines >= $want;
    }, 2 * CheckoutTest::slack());
    chomp @lines;
    return @lines;
}

# log_format checkout '$status $checkout_id $checkout_outcome $checkout_step_timings';
CheckoutTest::define_check(access_log => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my @l = read_log_lines(1);
    Test::More::is(scalar(@l), 1, "$name - one access log line for the checkout");
    Test::More::like($l[0] || '',
        qr/^201 \Q$doc->{checkoutId}\E confirmed validate:\d+\.\d{3},create:\d+\.\d{3}$/,
        "$name - confirmed line: status, the reply's id, outcome, step timings");

    my $dec = CheckoutTest::post_checkout('{"customerId":"cus_1"}',
                                          uri => '/checkout-decline', close => 1);
    my $dd = CheckoutTest::json_decode($dec->{body} || '') || {};
    my $bad = CheckoutTest::http_request(method => 'GET', uri => '/checkout', close => 1);
    my $inv = CheckoutTest::post_checkout('[1]', uri => '/checkout', close => 1);
    @l = read_log_lines(4);
    Test::More::is(scalar(@l), 4, "$name - four lines after three more requests");
    Test::More::like($l[1] || '',
        qr/^402 \Q@{[ $dd->{checkoutId} || 'none' ]}\E declined validate:\d+\.\d{3},authorize:\d+\.\d{3}$/,
        "$name - declined line: no timing for the step that did not run");
    Test::More::like($l[2] || '', qr/^405 - invalid_request -$/,
        "$name - bad method: no id, invalid_request, no timings");
    Test::More::like($l[3] || '', qr/^422 - invalid_request -$/,
        "$name - not an object: no id, invalid_request, no timings");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: confirmed: the variables, and Server-Timing with every step and the total
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/ok;
        checkout_step create    /_svc/orders/ok;
        add_header X-Checkout-Id $checkout_id always;
        add_header X-Outcome $checkout_outcome always;
        add_header X-Step-Timings $checkout_step_timings always;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- response_headers_like
X-Checkout-Id: chk_[A-Za-z0-9]{22}
X-Outcome: confirmed
X-Step-Timings: validate:\d+\.\d{3},authorize:\d+\.\d{3},create:\d+\.\d{3}
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=\d+(\.\d+)?,\s*create;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_check: vars_match_reply
--- no_error_log
[error]



=== TEST 2: step timings measure the step: a 300 ms cart service
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/slow;
        checkout_step create   /_svc/orders/ok;
        add_header X-Checkout-Id $checkout_id always;
        add_header X-Outcome $checkout_outcome always;
        add_header X-Step-Timings $checkout_step_timings always;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- response_headers_like
X-Step-Timings: validate:0\.(29\d|[3-5]\d\d),create:0\.\d{3}
Server-Timing: validate;dur=(29\d|[3-5]\d\d)(\.\d+)?,\s*create;dur=\d+(\.\d+)?,\s*total;dur=(29\d|[3-6]\d\d)(\.\d+)?
--- checkout_check: vars_match_reply



=== TEST 3: declined: outcome declined, timings only for the steps that ran
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/decline;
        checkout_step create    /_trap/orders;
        add_header X-Checkout-Id $checkout_id always;
        add_header X-Outcome $checkout_outcome always;
        add_header X-Step-Timings $checkout_step_timings always;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 402
--- response_headers_like
X-Checkout-Id: chk_[A-Za-z0-9]{22}
X-Outcome: declined
X-Step-Timings: validate:\d+\.\d{3},authorize:\d+\.\d{3}
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_check: vars_match_reply
--- no_error_log
step-was-called



=== TEST 4: requires_action: outcome requires_action
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/3ds;
        checkout_step create    /_trap/orders;
        add_header X-Checkout-Id $checkout_id always;
        add_header X-Outcome $checkout_outcome always;
        add_header X-Step-Timings $checkout_step_timings always;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 202
--- response_headers_like
X-Outcome: requires_action
X-Step-Timings: authorize:\d+\.\d{3}
Server-Timing: authorize;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_check: vars_match_reply



=== TEST 5: pending_review: outcome pending_review, the cut-off step timed at its deadline
--- config
    location = /checkout {
        checkout;
        checkout_step authorize /_svc/pay/sleep10 timeout=200ms on_timeout=pending;
        add_header X-Checkout-Id $checkout_id always;
        add_header X-Outcome $checkout_outcome always;
        add_header X-Step-Timings $checkout_step_timings always;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 202
--- response_headers_like
X-Outcome: pending_review
X-Step-Timings: authorize:0\.(19\d|[234]\d\d)
Server-Timing: authorize;dur=(19\d|[234]\d\d)(\.\d+)?,\s*total;dur=\d+(\.\d+)?



=== TEST 6: failed: outcome failed
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/503;
        add_header X-Checkout-Id $checkout_id always;
        add_header X-Outcome $checkout_outcome always;
        add_header X-Step-Timings $checkout_step_timings always;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 503
--- response_headers_like
X-Checkout-Id: chk_[A-Za-z0-9]{22}
X-Outcome: failed
X-Step-Timings: validate:\d+\.\d{3},authorize:\d+\.\d{3}
Server-Timing: validate;dur=\d+(\.\d+)?,\s*authorize;dur=\d+(\.\d+)?,\s*total;dur=\d+(\.\d+)?
--- checkout_check: vars_match_reply



=== TEST 7: bad input: outcome invalid_request, no id, no step timings, Server-Timing total only
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_trap/cart;
        add_header X-Checkout-Id $checkout_id always;
        add_header X-Outcome $checkout_outcome always;
        add_header X-Step-Timings $checkout_step_timings always;
    }
--- request
POST /checkout
{"customerId":
--- error_code: 400
--- response_headers_like
X-Outcome: invalid_request
X-Checkout-Id:
X-Step-Timings:
Server-Timing: total;dur=\d+(\.\d+)?
--- no_error_log
step-was-called



=== TEST 8: an access log with log_format: one line per checkout with its id, outcome and step timings
--- http_config
    log_format checkout '$status $checkout_id $checkout_outcome $checkout_step_timings';
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
        access_log $TEST_NGINX_CHECKOUT_LOG checkout;
    }
    location = /checkout-decline {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/decline;
        checkout_step create    /_trap/orders;
        access_log $TEST_NGINX_CHECKOUT_LOG checkout;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: access_log
--- no_error_log
step-was-called
