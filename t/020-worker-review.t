# checkout-worker integration: what a handler's 2xx JSON reply does
# (checkoutStatus, orderId, emit), the review flow that turns a
# pending_review checkout into OrderConfirmed, and redelivery of events
# already done (issue 4).
#
#   prove -It/lib t/020-worker-review.t

use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use CheckoutRedis ();
use CheckoutWorker ();
use Time::HiRes qw(time);

CheckoutWorker::setup();

my $S = $CheckoutWorker::Stream;
my $DLQ = $CheckoutWorker::Dlq;
my $JSON = JSON::PP->new->canonical;

sub with_ce_id {
    my ($ce_id) = @_;
    return grep { ($_->[1]{ce_id} // '') eq $ce_id }
           @{ CheckoutWorker::entries($S) };
}

CheckoutWorker::scenario('review flow: confirmed, orderId, OrderConfirmed '
                         . 'emitted once' => sub {
    my $rx = CheckoutWorker::receiver();
    $rx->set_json('review', body => {
        checkoutStatus => 'confirmed', orderId => 'ord_4711',
        emit => [ { type => 'OrderConfirmed',
                    data => { orderId => 'ord_4711',
                              reconciled => JSON::PP::true } } ],
    });
    my $w = CheckoutWorker->start(name => 'review', groups => [
        review => { url => $rx->url('/json/review'),
                    types => 'CheckoutPendingReview' },
        receipt => { url => $rx->url('/ok?receipt'),
                     types => 'OrderConfirmed' },
    ]);

    my $ev = CheckoutWorker::add_event(type => 'CheckoutPendingReview');
    my $id = $ev->{ce_id};
    my $before = CheckoutWorker::state_of($id);
    is($before->{status}, 'pending_review', 'the checkout is pending_review');

    my ($l) = $w->wait_for_outcome(group => 'review', ce_id => $id,
                                   result => 'done');
    ok($l, 'review: done') or diag($w->log_tail);
    my $child_id = "$id:review:1";
    my ($r) = $w->wait_for_outcome(group => 'receipt', ce_id => $child_id,
                                   result => 'done');
    ok($r, "receipt: the emitted $child_id is delivered and done");

    my $st = CheckoutWorker::state_of($id);
    is($st->{status}, 'confirmed', 'state: status confirmed');
    is($st->{orderId}, 'ord_4711', 'state: orderId');
    is($st->{review}, 'done', 'state: review=done');
    is($st->{receipt}, 'done', 'state: receipt=done (the emitted event)');
    ok(defined $st->{updated} && $st->{updated} ne $before->{updated},
       'state: updated changed') or diag("updated: " . ($st->{updated} // ''));
    is($st->{created}, $before->{created}, 'state: created untouched');

    my @child = with_ce_id($child_id);
    is(scalar @child, 1, 'exactly one emitted entry');
    my $f = @child ? $child[0][1] : {};
    is($f->{ce_type}, 'OrderConfirmed', 'emitted: ce_type');
    is($f->{ce_subject}, $id, 'emitted: ce_subject = the parent\'s');
    is($f->{ce_source}, 'checkout-worker/review', 'emitted: ce_source');
    is($f->{ce_specversion}, '1.0', 'emitted: ce_specversion');
    is($f->{ce_schemaversion}, '1', 'emitted: ce_schemaversion default 1');
    is($f->{'content-type'}, 'application/json', 'emitted: content-type');
    my $t = CheckoutWorker::parse_time($f->{ce_time});
    ok(defined $t && abs(time - $t) < 120, 'emitted: ce_time is now: '
                                           . ($f->{ce_time} // ''));
    is_deeply(eval { JSON::PP->new->decode($f->{data} // '') },
              { orderId => 'ord_4711', reconciled => JSON::PP::true },
              'emitted: data');

    my @reqs = $rx->requests('/ok?receipt');
    is(scalar @reqs, 1, 'the receipt handler got it once');
    is($reqs[0]{headers}{'idempotency-key'}, "receipt:$child_id",
       'with Idempotency-Key receipt:<child ce_id>') if @reqs;
    is($reqs[0]{headers}{'ce-source'}, 'checkout-worker/review',
       'and ce-source checkout-worker/review') if @reqs;
    ok(scalar $w->outcomes(group => 'review', ce_id => $child_id,
                           result => 'skipped'),
       'review skips OrderConfirmed (types)');
    ok(scalar $w->outcomes(group => 'receipt', ce_id => $id,
                           result => 'skipped'),
       'receipt skips CheckoutPendingReview (types)');

    # The same event again (the module re-sending, a replayed spool): the
    # done record wins, nothing is called or emitted twice.
    my $again = CheckoutWorker::add_event(type => 'CheckoutPendingReview',
                                          id => $id, state => 0);
    my ($dup) = $w->wait_for_outcome(group => 'review', id => $again->{entry},
                                     result => 'duplicate');
    ok($dup, 'the redelivered event: result=duplicate');
    is($rx->count('/json/review'), 1, 'the review handler was not called '
                                       . 'again');
    is(scalar with_ce_id($child_id), 1, 'OrderConfirmed is still there once');
    is(scalar with_ce_id("$id:review:2"), 0, 'and no second emitted event');
    CheckoutWorker::ok_wait('everything acknowledged', sub {
        !CheckoutWorker::pending($S, 'review')
            && !CheckoutWorker::pending($S, 'receipt');
    });
    is(CheckoutRedis::xlen($DLQ), 0, 'no dead letter');
});

CheckoutWorker::scenario('reply variants' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'replies', groups => [
        review => { url => $rx->url('/rx'), types => 'CheckoutPendingReview',
                    concurrency => 4 },
    ]);
    my %ev;
    my $add = sub {
        my ($name, $rx_opts) = @_;
        $ev{$name} = CheckoutWorker::add_event(type => 'CheckoutPendingReview',
                                               rx => $rx_opts);
    };
    # applied
    $add->(declined => { reply => { checkoutStatus => 'declined',
                                    orderId => 'ord_9' },
                         content_type => 'application/problem+json' });
    $add->(two => { reply => { emit => [
        { type => 'ReviewNoted', schemaversion => '2', data => [1, 2] },
        { type => 'ReviewClosed' } ] } });
    # ignored: done, nothing applied
    $add->(array => { reply => [ { checkoutStatus => 'confirmed' } ] });
    $add->(text => { reply => { checkoutStatus => 'confirmed' },
                     content_type => 'text/plain' });
    $add->(empty => { body_raw => '', content_type => 'application/json' });
    $add->(garbage => { body_raw => '{"checkoutStatus":"confirmed"',
                        content_type => 'application/json' });
    # wrong member types: dead, bad_reply
    $add->(status_num => { reply => { checkoutStatus => 5 } });
    $add->(order_num => { reply => { orderId => 7 } });
    $add->(emit_str => { reply => { emit => 'OrderConfirmed' } });
    $add->(emit_notype => { reply => { emit => [ { data => {} } ] } });
    $add->(emit_17 => { reply => { emit => [ map { { type => "T$_" } }
                                             1 .. 17 ] } });

    for my $n (sort keys %ev) {
        ok($w->wait_for_outcome(ce_id => $ev{$n}{ce_id},
                                result => qr/^(?:done|dead)$/),
           "$n: finished");
    }
    my %res = map { ($_ => ($w->outcomes(ce_id => $ev{$_}{ce_id},
                                          result => qr/^(?:done|dead)$/))[0])
                  } keys %ev;

    my $st = CheckoutWorker::state_of($ev{declined}{ce_id});
    is($res{declined} && $res{declined}{result}, 'done',
       'declined (+json content type): done');
    is($st->{status}, 'declined', 'declined: state status');
    is($st->{orderId}, 'ord_9', 'declined: orderId');

    my $id = $ev{two}{ce_id};
    my @c1 = with_ce_id("$id:review:1");
    my @c2 = with_ce_id("$id:review:2");
    is(scalar @c1 + scalar @c2, 2, 'two emitted events, ids :1 and :2');
    is($c1[0] && $c1[0][1]{ce_type}, 'ReviewNoted', ':1 is the first');
    is($c1[0] && $c1[0][1]{ce_schemaversion}, '2', ':1 schemaversion 2');
    is($c1[0] && $c1[0][1]{data}, '[1,2]', ':1 data (any JSON)');
    is($c2[0] && $c2[0][1]{ce_schemaversion}, '1', ':2 schemaversion 1');
    is($c2[0] && $c2[0][1]{data}, '{}', ':2 data defaults to {}');
    ok(!defined $c1[0] || $c1[0][0] lt $c2[0][0], 'emitted in order');

    for my $n (qw(array text empty garbage)) {
        is($res{$n} && $res{$n}{result}, 'done', "$n: done (ignored)");
        my $s = CheckoutWorker::state_of($ev{$n}{ce_id});
        is($s->{status}, 'pending_review', "$n: status unchanged");
        is($s->{review}, 'done', "$n: review=done");
    }
    my %dlq = map { ($_->[1]{original_id} => $_->[1]) } CheckoutWorker::dlq();
    for my $n (qw(status_num order_num emit_str emit_notype emit_17)) {
        is($res{$n} && $res{$n}{result}, 'dead', "$n: dead");
        like($dlq{ $ev{$n}{entry} }{error} // '', qr/^bad_reply: /,
             "$n: DLQ error bad_reply: ...");
        my $s = CheckoutWorker::state_of($ev{$n}{ce_id});
        is($s->{status}, 'pending_review', "$n: status unchanged");
        is($s->{review}, 'dead', "$n: review=dead");
        is(scalar with_ce_id("$ev{$n}{ce_id}:review:1"), 0,
           "$n: nothing emitted");
    }
    is(scalar $w->outcomes(result => 'retry'), 0, 'no reply is retried');
});

CheckoutWorker::scenario('redelivery of done events: no handler call' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'redeliver',
        groups => [receipt => { url => $rx->url('/effect') }]);
    my @evs = map { CheckoutWorker::add_event() } 1 .. 3;
    $w->wait_for_outcome(ce_id => $_->{ce_id}, result => 'done') for @evs;
    is($rx->count, 3, 'three deliveries');

    # An operator rewinds the group: every entry is read again.
    CheckoutRedis::cmd('XGROUP', 'SETID', $S, 'receipt', '0');
    my @dups = $w->wait_for_outcome(result => 'duplicate', _count => 3);
    is(scalar @dups, 3, 'each is a result=duplicate');
    is_deeply([sort map { $_->{id} } @dups],
              [sort map { $_->{entry} } @evs], 'for the same entries');
    is($rx->count, 3, 'the handler was not called again');
    is_deeply($rx->effects, { map { ("receipt:$_->{ce_id}" => 1) } @evs },
              'each effect applied once');
    CheckoutWorker::ok_wait('acknowledged', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    is(CheckoutWorker::state_of($evs[0]{ce_id})->{receipt}, 'done',
       'state stays done');
});

CheckoutWorker::finish();
