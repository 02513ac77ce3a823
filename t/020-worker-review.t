# checkout-worker integration: what a handler's 2xx JSON reply does
# (checkoutStatus, orderId, emit), the review flow that turns a
# pending_review checkout into OrderConfirmed, and redelivery of events
# already done (docs/worker.md).
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

CheckoutWorker::scenario('a 2xx JSON reply over 1 MiB is dead-lettered, a '
                         . 'text one is done' => sub {
    my $rx = CheckoutWorker::receiver();
    my $MiB = 1024 * 1024;
    # What it asks for comes after the padding: cut at 1 MiB, it is lost.
    my $wants = '"checkoutStatus":"confirmed","orderId":"ord_big",'
              . '"emit":[{"type":"BigEmitted"}]}';
    # a JSON object of $_[0] bytes
    my $body = sub {
        my $b = '{"pad":"' . ('x' x ($_[0] - 10 - length $wants)) . '",'
                . $wants;
        die "a body of " . length($b) . " bytes" if length $b != $_[0];
        return $b;
    };
    $rx->set_json('big', body => $body->($MiB + 1000));
    $rx->set_json('plus', content_type => 'application/problem+json',
                  body => $body->($MiB + 1));
    $rx->set_json('edge', body => $body->($MiB));
    $rx->set_json('text', content_type => 'text/plain',
                  body => 'y' x ($MiB + 1000));
    my $w = CheckoutWorker->start(name => 'bigreply', groups => [
        review => { url => $rx->url('/rx'), types => 'CheckoutPendingReview',
                    concurrency => 4 }]);
    my %ev = map { ($_ => CheckoutWorker::add_event(
                       type => 'CheckoutPendingReview', rx => { json => $_ }))
                 } qw(big plus edge text);
    my %res;
    for my $n (sort keys %ev) {
        ($res{$n}) = $w->wait_for_outcome(ce_id => $ev{$n}{ce_id},
                                          result => qr/^(?:done|dead)$/,
                                          _timeout => 20);
        ok($res{$n}, "$n: finished") or diag($w->log_tail);
    }
    my @r = $rx->wait_for_replies(4, 10);
    is(scalar(grep { ($_->{status} // 0) == 200 } @r), 4,
       'each was answered 200');
    my %dlq = map { ($_->[1]{original_id} => $_->[1]) } CheckoutWorker::dlq();

    for my $n (qw(big plus)) {
        my $id = $ev{$n}{ce_id};
        is($res{$n} && $res{$n}{result}, 'dead',
           "$n (JSON over 1 MiB: 1 MiB + " . ($n eq 'big' ? 1000 : 1)
           . ' bytes): dead, not done');
        is($res{$n} && $res{$n}{error}, 'bad_reply: body over 1048576 bytes',
           "$n: log error");
        is($dlq{ $ev{$n}{entry} } && $dlq{ $ev{$n}{entry} }{error},
           'bad_reply: body over 1048576 bytes', "$n: DLQ error");
        my $st = CheckoutWorker::state_of($id);
        is($st->{review}, 'dead', "$n: state review=dead");
        is($st->{status}, 'pending_review', "$n: status unchanged");
        ok(!exists $st->{orderId}, "$n: no orderId");
        is(scalar(grep { ($_->[1]{ce_id} // '') =~ /^\Q$id\E:/ }
                  @{ CheckoutWorker::entries($S) }), 0, "$n: nothing emitted");
    }
    is($res{text} && $res{text}{result}, 'done',
       'text/plain over 1 MiB: done (not JSON: nothing asked)');
    is(CheckoutWorker::state_of($ev{text}{ce_id})->{review}, 'done',
       'text: state review=done');

    my $id = $ev{edge}{ce_id};
    is($res{edge} && $res{edge}{result}, 'done', 'JSON of exactly 1 MiB: done');
    my $st = CheckoutWorker::state_of($id);
    is($st->{status}, 'confirmed', 'edge: checkoutStatus applied');
    is($st->{orderId}, 'ord_big', 'edge: orderId applied');
    my @child = grep { ($_->[1]{ce_id} // '') eq "$id:review:1" }
                @{ CheckoutWorker::entries($S) };
    is(scalar @child, 1, 'edge: the event emitted');
    is(CheckoutRedis::xlen($DLQ), 2, 'two dead letters');
});

CheckoutWorker::scenario('an emit for a parent whose ce_id is too long to '
                         . 'derive ids from' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'longparent', groups => [
        review => { url => $rx->url('/rx'), types => 'CheckoutPendingReview',
                    concurrency => 3 }]);
    my $reply = { checkoutStatus => 'confirmed', orderId => 'ord_long',
                  emit => [ { type => 'OrderConfirmed' } ] };
    # "<ce_id>:review:1": 250 + 9 = 259 bytes, over the 256 of a ce_id
    my $long = 'chk_' . ('L' x 246);
    # the longest the check lets through: 242 + 6 + 8 = 256
    my $fit = 'chk_' . ('F' x 238);
    my $noemit = 'chk_' . ('N' x 246);
    my %ev = (
        long => CheckoutWorker::add_event(type => 'CheckoutPendingReview',
                                          id => $long, rx => { reply => $reply }),
        fit => CheckoutWorker::add_event(type => 'CheckoutPendingReview',
                                         id => $fit, rx => { reply => $reply }),
        noemit => CheckoutWorker::add_event(type => 'CheckoutPendingReview',
            id => $noemit, rx => { reply => { checkoutStatus => 'confirmed' } }),
    );
    is(length $long, 250, 'a parent ce_id of 250 bytes');
    my %res;
    for my $n (sort keys %ev) {
        ($res{$n}) = $w->wait_for_outcome(ce_id => $ev{$n}{ce_id},
                                          result => qr/^(?:done|dead)$/);
        ok($res{$n}, "$n: finished") or diag($w->log_tail);
    }
    my $err = 'bad_reply: the parent ce_id is too long to derive emitted ids '
            . 'from';
    is($res{long} && $res{long}{result}, 'dead', '250 bytes with an emit: dead');
    is($res{long} && $res{long}{error}, $err, 'log: error');
    my $dl = CheckoutWorker::dead_letter_of($ev{long}{entry});
    is($dl && $dl->[1]{error}, $err, 'DLQ: error');
    is(scalar(grep { ($_->[1]{ce_id} // '') =~ /^\Q$long\E:/ }
              @{ CheckoutWorker::entries($S) }), 0, 'nothing emitted');
    my $st = CheckoutWorker::state_of($long);
    is($st->{review}, 'dead', 'state review=dead');
    is($st->{status}, 'pending_review', 'status unchanged');
    ok(!exists $st->{orderId}, 'no orderId');

    is($res{fit} && $res{fit}{result}, 'done',
       'a parent of 242 bytes: done');
    my @child = grep { ($_->[1]{ce_id} // '') eq "$fit:review:1" }
                @{ CheckoutWorker::entries($S) };
    is(scalar @child, 1, 'its event is emitted, ce_id of '
                         . length("$fit:review:1") . ' bytes');
    is(CheckoutWorker::state_of($fit)->{status}, 'confirmed',
       'and its status applied');
    ok($w->wait_for_outcome(ce_id => "$fit:review:1", result => 'skipped'),
       'the emitted event is a valid event (review skips its type)');
    is($res{noemit} && $res{noemit}{result}, 'done',
       'a parent of 250 bytes whose reply emits nothing: done');
    is(CheckoutWorker::state_of($noemit)->{status}, 'confirmed',
       'its status applied');
});

CheckoutWorker::finish();
