# Many checkouts at once: 200 simultaneous connections, and 20 keepalive
# connections x 10 checkouts of mixed outcomes. Every reply must be the right
# one for its own request, every checkout id distinct, and the whole run
# bounded in time. The load runs from add_response_body_check (raw sockets,
# one IO::Select loop) after the block's own request.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use Test::More ();
use Time::HiRes ();

worker_connections(1024);
CheckoutTest::use_mock_services();

my $ID = CheckoutTest::id_re();

sub cart {
    my ($i) = @_;
    return qq({"customerId":"cus_$i","items":[{"sku":"book-$i","quantity":1,"unitPrice":1250}]});
}

sub first_few {
    my @l = @_;
    return [@l[0 .. ($#l < 4 ? $#l : 4)]];
}

CheckoutTest::define_check(burst_200 => sub {
    my ($block) = @_;
    my $name = $block->name;
    my $t0 = Time::HiRes::time();
    my @res = CheckoutTest::run_clients(
        conns => 200, requests => 1, timeout => 20,
        make => sub { my ($c) = @_; (uri => '/checkout', body => cart($c)) });
    my $elapsed = Time::HiRes::time() - $t0;

    Test::More::is(scalar(@res), 200, "$name - 200 replies");
    my @bad = grep { ($_->{status} || 0) != 201 } @res;
    Test::More::is(scalar(@bad), 0, "$name - all 200 are 201")
        or Test::More::diag(Test::More::explain(first_few(
            map { { conn => $_->{conn}, status => $_->{status},
                    error => $_->{error}, body => $_->{body} } } @bad)));
    my (%ids, $good_body, $good_loc);
    for my $r (@res) {
        my $d = CheckoutTest::json_decode($r->{body} || '');
        $d = {} unless ref $d eq 'HASH';
        my $id = $d->{checkoutId} || '';
        $ids{$id}++ if $id =~ $ID;
        $good_body++ if ($d->{status} || '') eq 'confirmed'
                        && ($d->{orderId} || '') eq 'ord_123';
        $good_loc++ if $id && ($r->{headers}{location} || '') eq "/checkout/$id";
    }
    Test::More::is(scalar(keys %ids), 200, "$name - 200 distinct well-formed checkout ids");
    Test::More::is($good_body || 0, 200, "$name - 200 confirmed bodies with the order");
    Test::More::is($good_loc || 0, 200, "$name - each Location names its own checkout");
    # each checkout waits 300 ms for its payment step: in parallel, not in turn
    Test::More::cmp_ok($elapsed, "<", 6 * CheckoutTest::slack(), "$name - all answered within " . 6 * CheckoutTest::slack() . " s (took "
                                         . sprintf('%.2f', $elapsed) . " s)");
});

# per request, by (connection + sequence number): [uri, status, outcome]
my @MIX = (
    ['/checkout',         201, 'confirmed'],
    ['/checkout-decline', 402, 'declined'],
    ['/checkout-timeout', 503, 'failed'],
    ['/checkout-3ds',     202, 'requires_action'],
    ['/checkout',         201, 'confirmed'],
    ['/checkout-bad',     422, 'invalid_request'],
    ['/checkout-pending', 202, 'pending_review'],
    ['/checkout',         201, 'confirmed'],
    ['/checkout-decline', 402, 'declined'],
    ['/checkout',         201, 'confirmed'],
);

CheckoutTest::define_check(keepalive_mix => sub {
    my ($block) = @_;
    my $name = $block->name;
    my $t0 = Time::HiRes::time();
    my @res = CheckoutTest::run_clients(
        conns => 20, requests => 10, timeout => 20,
        make => sub {
            my ($c, $seq) = @_;
            my $m = $MIX[($c + $seq) % @MIX];
            my $body = $m->[0] eq '/checkout-bad' ? '[1,2,3]' : cart("$c-$seq");
            return (uri => $m->[0], body => $body);
        });
    my $elapsed = Time::HiRes::time() - $t0;

    Test::More::is(scalar(@res), 200, "$name - 200 replies");
    my (@wrong, %ids, $n_ids);
    for my $r (@res) {
        my $m = $MIX[($r->{conn} + $r->{seq}) % @MIX];
        my $d = CheckoutTest::json_decode($r->{body} || '');
        $d = {} unless ref $d eq 'HASH';
        if (($r->{status} || 0) != $m->[1] || ($d->{status} || '') ne $m->[2]) {
            push @wrong, { conn => $r->{conn}, seq => $r->{seq}, want => $m,
                           status => $r->{status}, error => $r->{error},
                           body => $r->{body} };
        }
        if ($m->[2] ne 'invalid_request') {
            $n_ids++;
            $ids{$d->{checkoutId}}++ if ($d->{checkoutId} || '') =~ $ID;
        }
    }
    Test::More::is(scalar(@wrong), 0, "$name - every reply is the one for its own request")
        or Test::More::diag(Test::More::explain(first_few(@wrong)));
    Test::More::is(scalar(keys %ids), $n_ids, "$name - $n_ids distinct checkout ids");
    my %per_conn;
    $per_conn{$_->{conn}}++ for grep { $_->{status} } @res;
    Test::More::is(scalar(grep { $_ == 10 } values %per_conn), 20,
                   "$name - each of the 20 connections carried its 10 checkouts");
    Test::More::cmp_ok($elapsed, "<", 8 * CheckoutTest::slack(), "$name - done within " . 8 * CheckoutTest::slack() . " s (took "
                                         . sprintf('%.2f', $elapsed) . " s)");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: 200 checkouts on 200 connections at once, each waiting 300 ms on its payment step
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/slow timeout=2s;
        checkout_step create    /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_0"}
--- error_code: 201
--- checkout_check: burst_200
--- timeout: 20
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: 20 keepalive connections x 10 checkouts with every outcome, interleaved
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/ok;
        checkout_step create    /_svc/orders/ok;
    }
    location = /checkout-decline {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/decline;
        checkout_step create    /_trap/orders;
    }
    location = /checkout-timeout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=100ms;
        checkout_step create    /_trap/orders;
    }
    location = /checkout-pending {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/sleep10 timeout=100ms on_timeout=pending;
        checkout_step create    /_trap/orders;
    }
    location = /checkout-3ds {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/3ds;
        checkout_step create    /_trap/orders;
    }
    location = /checkout-bad {
        checkout;
        checkout_step validate  /_trap/cart;
    }
--- request
POST /checkout
{"customerId":"cus_0"}
--- error_code: 201
--- checkout_check: keepalive_mix
--- timeout: 20
--- no_error_log
step-was-called
[alert]
[crit]
