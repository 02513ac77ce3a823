# checkout-worker integration: crashes and what is never lost
# (docs/worker.md, "Retries, order and reclaim", "Retention"):
# kill -9 mid-delivery and a second worker reclaiming the entry after
# min-idle with the effect applied once, poison messages on reclaim, the
# durable retry schedule, retention (XTRIM) and entries deleted before
# delivery.
#
#   prove -It/lib t/020-worker-reclaim.t

use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use CheckoutRedis ();
use CheckoutWorker ();
use Time::HiRes qw(time);

CheckoutWorker::setup();

my $S = $CheckoutWorker::Stream;
my $DLQ = $CheckoutWorker::Dlq;

CheckoutWorker::scenario('kill -9 mid-delivery: another worker reclaims, '
                         . 'effect once' => sub {
    my $rx = CheckoutWorker::receiver();
    my %g = (receipt => { url => $rx->url('/rx'), timeout => '2s',
                          'min-idle' => '3s', 'max-attempts' => 5 });
    my $w1 = CheckoutWorker->start(name => 'crash1', groups => [%g]);
    # The first call takes 1.5 s (then applies the effect: the receiver
    # does not know its client is gone); later ones answer at once.
    my $ev = CheckoutWorker::add_event(
        rx => { slow => 1500, slow_on => [1], effect => 1 });
    ok($rx->wait_for_requests(1, 15), 'the first delivery is in flight');
    $w1->kill9;
    ok(!$w1->running, 'worker 1 killed (SIGKILL)');

    my @p = CheckoutWorker::pending($S, 'receipt');
    is(scalar @p, 1, 'the entry is pending');
    is($p[0][1], 'crash1', 'to worker 1') if @p;

    my $w2 = CheckoutWorker->start(name => 'crash2', groups => [%g]);
    my ($l) = $w2->wait_for_outcome(ce_id => $ev->{ce_id}, result => 'done',
                                    _timeout => 25);
    ok($l, 'worker 2 (another consumer) reclaims it and finishes it')
        or diag($w2->log_tail);
    is($l->{attempt}, 2, 'as attempt 2 (the delivery count)') if $l;
    my @r = $rx->wait_for_replies(2, 10);
    is(scalar @r, 2, 'the receiver got the event twice');
    is_deeply([map { $_->{headers}{'idempotency-key'} } @r],
              [("receipt:$ev->{ce_id}") x 2], 'with the same Idempotency-Key');
    is_deeply($rx->effects, { "receipt:$ev->{ce_id}" => 1 },
              'and the effect was applied once');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    is(CheckoutWorker::state_of($ev->{ce_id})->{receipt}, 'done',
       'state done');
    is(CheckoutRedis::cmd('GET',
           CheckoutWorker::done_key('receipt', $ev->{ce_id})),
       $ev->{entry}, 'done record');
    is(scalar $w2->outcomes(ce_id => $ev->{ce_id}), 1,
       'worker 2 logged one outcome for it');
});

CheckoutWorker::scenario('poison: delivery count past max-attempts on '
                         . 'reclaim goes to the DLQ' => sub {
    my $rx = CheckoutWorker::receiver();
    my $ev = CheckoutWorker::add_event();
    # A consumer that crashed on it over and over.
    CheckoutRedis::cmd('XGROUP', 'CREATE', $S, 'receipt', '0');
    CheckoutRedis::cmd('XREADGROUP', 'GROUP', 'receipt', 'ghost', 'COUNT', 1,
                       'STREAMS', $S, '>');
    CheckoutRedis::cmd('XCLAIM', $S, 'receipt', 'ghost', 0, $ev->{entry},
                       'IDLE', 600000, 'RETRYCOUNT', 5);
    my @p = CheckoutWorker::pending($S, 'receipt');
    ok(@p && $p[0][3] >= 5, 'pending to ghost, delivered '
                            . (@p ? $p[0][3] : 0) . ' times');

    my $w = CheckoutWorker->start(name => 'poison',
        groups => [receipt => { url => $rx->url('/ok'),
                                'max-attempts' => 3, 'min-idle' => '3s' }]);
    my ($l) = $w->wait_for_outcome(id => $ev->{entry}, result => 'dead',
                                   _timeout => 20);
    ok($l, 'reclaimed and dead-lettered') or diag($w->log_tail);
    is($rx->count, 0, 'without a delivery');
    my ($dl) = grep { $_->[1]{original_id} eq $ev->{entry} }
               CheckoutWorker::dlq();
    ok($dl, 'DLQ entry with original_id');
    if ($dl) {
        is($dl->[1]{group}, 'receipt', 'DLQ: group');
        ok($dl->[1]{attempts} >= 5, "DLQ: attempts $dl->[1]{attempts}");
        is($dl->[1]{ce_id}, $ev->{ce_id}, 'DLQ: the original fields');
    }
    CheckoutWorker::ok_wait('acknowledged', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    is(CheckoutWorker::state_of($ev->{ce_id})->{receipt}, 'dead',
       'state dead');
});

CheckoutWorker::scenario('the retry schedule survives kill -9' => sub {
    my $rx = CheckoutWorker::receiver();
    my %g = (receipt => { url => $rx->url('/rx'), 'backoff-base' => '5s',
                          'backoff-cap' => '5s', 'min-idle' => '6s',
                          'max-attempts' => 3, concurrency => 3 });
    my $w = CheckoutWorker->start(name => 'durable', groups => [%g]);
    # Full jitter: a delay in [0, 5 s] each; with three events, some retry
    # is still scheduled when the worker dies.
    my @evs = map { CheckoutWorker::add_event(rx => { flaky => 1,
                                                       effect => 1 }) } 1 .. 3;
    my @retry = $w->wait_for_outcome(result => 'retry', _count => 3);
    is(scalar @retry, 3, 'each failed once: result=retry');
    $w->kill9;

    my %zset = @{ CheckoutRedis::cmd('ZRANGE', 'checkout:worker:retry:receipt',
                                     0, -1, 'WITHSCORES') };
    my @waiting = grep { $rx->calls("receipt:$_->{ce_id}") == 1 } @evs;
    ok(@waiting, scalar(@waiting) . ' retries had not happened yet');
    for my $e (@waiting) {
        my ($l) = grep { $_->{id} eq $e->{entry} } @retry;
        ok(exists $zset{ $e->{entry} },
           "$e->{entry} is in checkout:worker:retry:receipt");
        my $due = (CheckoutWorker::parse_time($l->{ts}) // 0) * 1000
                  + ($l->{next_ms} // 0);
        ok(abs(($zset{ $e->{entry} } // 0) - $due) < 2000,
           'scored with its due time (ms)')
            or diag("score $zset{ $e->{entry} }, log: $l->{_raw}");
    }

    $w->start;    # the same consumer again
    for my $e (@evs) {
        ok($w->wait_for_outcome(ce_id => $e->{ce_id}, result => 'done',
                                _timeout => 25),
           "$e->{ce_id}: done after the restart or before");
        is($rx->calls("receipt:$e->{ce_id}"), 2, "$e->{ce_id}: two calls");
    }
    for my $e (@waiting) {
        my @r = grep { $_->{headers}{'idempotency-key'} eq
                       "receipt:$e->{ce_id}" } $rx->requests;
        my $due = ($zset{ $e->{entry} } // 0) / 1000;
        ok(@r == 2 && $r[1]{time} >= $due - 0.05,
           "$e->{ce_id}: retried by the new process no earlier than due")
            or diag(sprintf 'due %.3f, retried %.3f', $due,
                    @r > 1 ? $r[1]{time} : 0);
    }
    is_deeply($rx->effects, { map { ("receipt:$_->{ce_id}" => 1) } @evs },
              'each effect once');
    is(CheckoutRedis::cmd('ZCARD', 'checkout:worker:retry:receipt'), 0,
       'the schedule is empty');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::scenario('retention 0: trims only what every group is '
                         . 'past' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'retention',
        global => [retention => 0],
        groups => [fast => { url => $rx->url('/ok?fast') },
                   late => { url => $rx->url('/ok?late') }]);
    is($w->admin('PAUSE', 'late'), 'OK', 'PAUSE late');
    my @evs = map { CheckoutWorker::add_event() } 1 .. 3;
    $w->wait_for_outcome(group => 'fast', ce_id => $_->{ce_id},
                         result => 'done') for @evs;
    is($rx->count('/ok?fast'), 3, 'fast delivered all three');
    CheckoutWorker::ok_holds('the entries late still needs stay (3 s)', sub {
        CheckoutRedis::xlen($S) == 3;
    }, 3, sub { 'XLEN ' . CheckoutRedis::xlen($S) });

    is($w->admin('RESUME', 'late'), 'OK', 'RESUME late');
    $w->wait_for_outcome(group => 'late', ce_id => $_->{ce_id},
                         result => 'done') for @evs;
    is($rx->count('/ok?late'), 3, 'late delivered all three');
    CheckoutWorker::ok_wait('then they are trimmed', sub {
        CheckoutRedis::xlen($S) == 0;
    }, 20, sub { 'XLEN ' . CheckoutRedis::xlen($S) });

    # An entry in flight is never trimmed.
    my $slow = CheckoutWorker::add_event(rx => { slow => 2500 });
    $rx->wait_for_requests(7, 10);
    ok(scalar(CheckoutWorker::requests_for($rx, $slow->{ce_id})) >= 1,
       'a slow delivery is in flight');
    CheckoutWorker::ok_holds('its entry stays meanwhile', sub {
        grep { $_->[0] eq $slow->{entry} } @{ CheckoutWorker::entries($S) };
    }, 1.5);
    $w->wait_for_outcome(ce_id => $slow->{ce_id}, result => 'done',
                         _count => 2);
    CheckoutWorker::ok_wait('and goes once both groups are done', sub {
        CheckoutRedis::xlen($S) == 0;
    }, 20);
});

CheckoutWorker::scenario('an entry deleted before delivery is '
                         . 'dead-lettered' => sub {
    my $rx = CheckoutWorker::receiver();
    my %g = (receipt => { url => $rx->url('/rx'), timeout => '2s',
                          'min-idle' => '3s' });
    my $w1 = CheckoutWorker->start(name => 'del1', groups => [%g]);
    my $ev = CheckoutWorker::add_event(rx => { slow => 1500 });
    ok($rx->wait_for_requests(1, 15), 'delivery in flight');
    $w1->kill9;
    is(CheckoutRedis::cmd('XDEL', $S, $ev->{entry}), 1,
       'the pending entry is deleted (XDEL)');

    my $w2 = CheckoutWorker->start(name => 'del2', groups => [%g]);
    my ($l) = $w2->wait_for_outcome(id => $ev->{entry}, result => 'deleted',
                                    _timeout => 25);
    ok($l, 'worker 2: result=deleted') or diag($w2->log_tail);
    is($l->{error}, 'deleted_before_delivery', 'error=deleted_before_delivery')
        if $l;
    my $dl = CheckoutWorker::dead_letter_of($ev->{entry});
    ok($dl, 'a dead letter for it');
    if ($dl) {
        is($dl->[1]{error}, 'deleted_before_delivery', 'DLQ: error');
        is($dl->[1]{group}, 'receipt', 'DLQ: group');
        is($dl->[1]{stream}, $S, 'DLQ: stream');
    }
    CheckoutWorker::ok_wait('not pending any more', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    is($rx->count, 1, 'no second delivery');
});

CheckoutWorker::scenario('an entry deleted while it waits behind its '
                         . 'subject: dead-lettered, the subject goes on'
                         => sub {
    # held entries are touched every 2 s (min-idle / 3)
    my ($w, $rx, @e) = CheckoutWorker::held_behind(
        name => 'delwait', slow_ms => 3500, min_idle => '6s');
    is(CheckoutRedis::cmd('XDEL', $S, $e[1]{entry}), 1,
       "XDEL $e[1]{ce_id} while it waits");

    my ($l) = $w->wait_for_outcome(id => $e[1]{entry}, result => 'deleted',
                                   _timeout => 10);
    ok($l, 'the worker logs result=deleted for it') or diag($w->log_tail);
    is($l->{error}, 'deleted_before_delivery', 'error=deleted_before_delivery')
        if $l;
    my @lines = $w->log_lines;
    my ($pos_del) = grep { ($lines[$_]{result} // '') eq 'deleted' }
                    0 .. $#lines;
    my ($pos_done) = grep { ($lines[$_]{result} // '') eq 'done'
                            && $lines[$_]{id} eq $e[0]{entry} } 0 .. $#lines;
    ok(defined $pos_del && (!defined $pos_done || $pos_del < $pos_done),
       "while $e[0]{ce_id} was still in flight (the periodic touch noticed)");

    my ($l3) = $w->wait_for_outcome(id => $e[2]{entry}, result => 'done',
                                    _timeout => 15);
    ok($l3, "$e[2]{ce_id}: done (the subject went on)");
    is(join(' ', map { $_->{headers}{'ce-id'} } $rx->requests),
       "$e[0]{ce_id} $e[2]{ce_id}",
       "the receiver got the first and the third, never $e[1]{ce_id}");
    my $dl = CheckoutWorker::dead_letter_of($e[1]{entry});
    ok($dl, 'a dead letter for it');
    if ($dl) {
        is($dl->[1]{error}, 'deleted_before_delivery', 'DLQ: error');
        is($dl->[1]{group}, 'receipt', 'DLQ: group');
        is($dl->[1]{stream}, $S, 'DLQ: stream');
        is($dl->[1]{attempts}, 1, 'DLQ: attempts 1');
        is($dl->[1]{consumer}, 'delwait', 'DLQ: consumer');
    }
    is(CheckoutRedis::xlen($DLQ), 1, 'one dead letter only');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::scenario('an entry deleted while it waits for its retry: '
                         . 'dead-lettered, the subject goes on' => sub {
    my $rx = CheckoutWorker::receiver();
    # held entries are touched every 2 s (min-idle / 3)
    my $w = CheckoutWorker->start(name => 'delretry', groups => [
        receipt => { url => $rx->url('/rx'), timeout => '2s',
                     'backoff-base' => '5s', 'backoff-cap' => '5s',
                     'min-idle' => '6s' }]);
    my $zset = 'checkout:worker:retry:receipt';
    # the retry waits 5 s: time for the XDEL and a touch meanwhile
    my ($e1, $e2, $due) = CheckoutWorker::held_retry($w, $rx, 5) or return;
    is(CheckoutRedis::cmd('XDEL', $S, $e1->{entry}), 1,
       "XDEL $e1->{ce_id} while it waits for its retry");

    my ($l) = $w->wait_for_outcome(id => $e1->{entry}, result => 'deleted',
                                   _timeout => 10);
    ok($l, 'the worker logs result=deleted for it') or diag($w->log_tail);
    is($l->{error}, 'deleted_before_delivery', 'error=deleted_before_delivery')
        if $l;
    my ($l2) = $w->wait_for_outcome(id => $e2->{entry}, result => 'done',
                                    _timeout => 15);
    ok($l2, "$e2->{ce_id}: done (the subject went on)");
    my ($r2) = CheckoutWorker::requests_for($rx, $e2->{ce_id});
    ok($r2 && $r2->{time} < $due / 1000,
       'before the retry would have been due (the touch noticed, not the '
       . 'retry)') or diag(sprintf 'due %.3f, second event at %.3f',
                               $due / 1000, $r2 ? $r2->{time} : 0);
    is(join(' ', map { $_->{headers}{'ce-id'} }
                 grep { $_->{headers}{'ce-subject'} eq $e1->{subject} }
                 $rx->requests),
       "$e1->{ce_id} $e2->{ce_id}",
       'the receiver got the first (once: the 503) and the second');
    my $dl = CheckoutWorker::dead_letter_of($e1->{entry});
    ok($dl, 'a dead letter for it');
    if ($dl) {
        is($dl->[1]{error}, 'deleted_before_delivery', 'DLQ: error');
        is($dl->[1]{group}, 'receipt', 'DLQ: group');
        is($dl->[1]{attempts}, 1, 'DLQ: attempts 1');
    }
    is(CheckoutRedis::cmd('ZCARD', $zset), 0, 'the retry is unscheduled');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::scenario('a dead consumer\'s backlog of 300 is taken over '
                         . 'within a few seconds' => sub {
    my $rx = CheckoutWorker::receiver();
    my $N = 300;
    CheckoutRedis::cmd('XGROUP', 'CREATE', $S, 'receipt', '0', 'MKSTREAM');
    my @e = map { CheckoutWorker::add_event() } 1 .. $N;
    # A consumer "dead-one" read them all and died: pending, never acked,
    # idle for a minute (XCLAIM ... IDLE, JUSTID: delivery count stays 1).
    my $r = CheckoutRedis::cmd('XREADGROUP', 'GROUP', 'receipt', 'dead-one',
                               'COUNT', $N, 'STREAMS', $S, '>');
    is(scalar @{ $r->[0][1] }, $N, "dead-one read the $N entries");
    CheckoutRedis::cmd('XCLAIM', $S, 'receipt', 'dead-one', 0,
                       (map { $_->{entry} } @e), 'IDLE', 60000, 'JUSTID');
    my @p = CheckoutWorker::pending($S, 'receipt');
    is(scalar(grep { $_->[1] eq 'dead-one' && $_->[2] >= 60000 } @p), $N,
       'all pending to dead-one, idle 60 s');

    # Concurrency 4: a page of XAUTOCLAIM is 16 entries (4 x concurrency),
    # reclaim runs every 0.5 s (min-idle / 2): one page per run would take
    # about 9.5 s. The worker delivers 300 entries in well under a second.
    my $t0 = time;
    my $w = CheckoutWorker->start(name => 'backlog', groups => [
        receipt => { url => $rx->url('/ok'), concurrency => 4,
                     timeout => '500ms', 'backoff-cap' => '200ms',
                     'min-idle' => '1s' }]);
    my ($n, @seen) = (0);
    CheckoutWorker::wait_for(sub {
        $n = scalar $w->outcomes(result => 'done');
        push @seen, sprintf('%.1fs:%d', time - $t0, $n)
            if !@seen || $seen[-1] !~ /:$n$/;
        $n >= $N;
    }, 20);
    my $took = time - $t0;
    is($n, $N, "all $N done");
    ok($took < 5, sprintf('taken over and done within 5 s of the start '
                          . '(%.1f s)', $took))
        or diag("done over time: @seen");
    my @bad = grep { ($_->{attempt} // '') ne '2' }
              $w->outcomes(result => 'done');
    ok(!@bad, 'each at attempt 2 (dead-one\'s delivery counted)')
        or diag($bad[0]{_raw});
    is($rx->count, $N, 'one delivery each');
    is(CheckoutRedis::xlen($DLQ), 0, 'no dead letter');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::scenario('an entry deleted just before its turn, before '
                         . 'any touch' => sub {
    # touched every 10 s (min-idle / 3): not before the second one's turn
    my ($w, $rx, @e) = CheckoutWorker::held_behind(
        name => 'delturn', slow_ms => 1000, min_idle => '30s', count => 2);
    is(CheckoutRedis::cmd('XDEL', $S, $e[1]{entry}), 1,
       "XDEL $e[1]{ce_id} while it waits");
    my ($l) = $w->wait_for_outcome(id => $e[1]{entry}, _timeout => 10);
    ok($l, "an outcome for $e[1]{ce_id}");
    # the begin script finds it gone: the copy held is dead-lettered, with
    # the event's own fields, so that it can be replayed
    is($l && $l->{result}, 'dead', 'result=dead');
    is($l && $l->{error}, 'deleted_before_delivery',
       'error=deleted_before_delivery');
    is(scalar CheckoutWorker::requests_for($rx, $e[1]{ce_id}), 0,
       'never delivered');
    my $dl = CheckoutWorker::dead_letter_of($e[1]{entry});
    ok($dl, 'a dead letter');
    is($dl && $dl->[1]{error}, 'deleted_before_delivery',
       'its error is deleted_before_delivery');
    is($dl && $dl->[1]{ce_id}, $e[1]{ce_id}, 'it keeps the event\'s fields');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::finish();
