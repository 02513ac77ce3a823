# checkout-worker integration: per-subject ordering and concurrency
# (docs/worker.md, "Retries, order and reclaim"). Events with the same
# ce_subject are handled in stream order within a group on one worker,
# never two at once; other subjects run concurrently up to the group's
# concurrency.
#
# The receiver logs when each request arrived and when its reply was
# about to be written: a request the worker sends only once it has the
# previous reply always arrives later than that.
#
#   prove -It/lib t/020-worker-ordering.t

use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use CheckoutRedis ();
use CheckoutWorker ();

CheckoutWorker::setup();

my $S = $CheckoutWorker::Stream;

# Most requests in flight at once.
sub max_in_flight {
    my @edges;
    for my $r (@_) {
        push @edges, [ $r->{time}, 1 ], [ $r->{reply_time} // 9e9, -1 ];
    }
    my ($n, $max) = (0, 0);
    for my $e (sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @edges) {
        $n += $e->[1];
        $max = $n if $n > $max;
    }
    return $max;
}

CheckoutWorker::scenario('same subject: stream order, one at a time; '
                         . 'other subjects concurrent' => sub {
    my $rx = CheckoutWorker::receiver();
    my $subj_a = CheckoutWorker::random_id();
    my $subj_b = CheckoutWorker::random_id();
    # Written before the worker starts: it reads them all at once.
    my @a = (
        CheckoutWorker::add_event(id => "${subj_a}_1", subject => $subj_a,
                                  rx => { flaky => 1, slow => 400 }),
        map { CheckoutWorker::add_event(id => "${subj_a}_$_",
                                        subject => $subj_a, state => 0,
                                        rx => { slow => 100 }) } 2 .. 4,
    );
    my @b = map { CheckoutWorker::add_event(id => "${subj_b}_$_",
                                            subject => $subj_b,
                                            rx => { slow => 700 }) } 1 .. 2;
    # interleave: one more of A after B's
    push @a, CheckoutWorker::add_event(id => "${subj_a}_5", subject => $subj_a,
                                       state => 0);

    my $w = CheckoutWorker->start(name => 'order',
        groups => [receipt => { url => $rx->url('/rx'), concurrency => 4,
                                'max-attempts' => 5 }]);
    for my $e (@a, @b) {
        ok($w->wait_for_outcome(ce_id => $e->{ce_id}, result => 'done',
                                _timeout => 20), "$e->{ce_id} done");
    }
    my @ra = grep { $_->{headers}{'ce-subject'} eq $subj_a } $rx->requests;
    my @rb = grep { $_->{headers}{'ce-subject'} eq $subj_b } $rx->requests;

    is(CheckoutWorker::ids(@ra), join(' ', map { $_->{ce_id} } $a[0], @a),
       'subject A: in stream order, the first retried before the next');
    CheckoutWorker::one_at_a_time('subject A: never two at once', @ra);
    is(CheckoutWorker::ids(@rb), join(' ', map { $_->{ce_id} } @b), 'subject B: in order');
    CheckoutWorker::one_at_a_time('subject B: never two at once', @rb);
    is_deeply([map { $_->{ce_id} } $w->outcomes(result => 'done',
                                                ce_id => qr/^\Q$subj_a\E/)],
              [map { $_->{ce_id} } @a], 'subject A: done in stream order');

    my ($a1, $b1) = ($ra[0], $rb[0]);
    ok($a1->{time} < $b1->{reply_time} && $b1->{time} < $a1->{reply_time},
       'the two subjects were delivered at the same time (concurrency 4)')
        or diag("A1 $a1->{time}..$a1->{reply_time}, "
                . "B1 $b1->{time}..$b1->{reply_time}");
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::scenario('a dead first event: the next one follows' => sub {
    my $rx = CheckoutWorker::receiver();
    my $subj = CheckoutWorker::random_id();
    my @e = (
        CheckoutWorker::add_event(id => "${subj}_1", subject => $subj,
                                  rx => { status => 503 }),
        CheckoutWorker::add_event(id => "${subj}_2", subject => $subj,
                                  rx => { status => 404 }),
        CheckoutWorker::add_event(id => "${subj}_3", subject => $subj,
                                  state => 0),
    );
    my $w = CheckoutWorker->start(name => 'orderdead',
        groups => [receipt => { url => $rx->url('/rx'), concurrency => 3,
                                'max-attempts' => 3 }]);
    ok($w->wait_for_outcome(ce_id => $e[2]{ce_id}, result => 'done',
                            _timeout => 20), 'the last one is done');
    my @r = $rx->requests;
    is(CheckoutWorker::ids(@r), join(' ', map { $_->{ce_id} } ($e[0]) x 3, @e[1, 2]),
       'the first exhausts its attempts, then the second (dead at once), '
       . 'then the third');
    CheckoutWorker::one_at_a_time('one at a time', @r);
    is_deeply([map { "$_->{ce_id}:$_->{result}" }
               $w->outcomes(result => qr/^(?:done|dead)$/)],
              ["$e[0]{ce_id}:dead", "$e[1]{ce_id}:dead", "$e[2]{ce_id}:done"],
              'outcomes in stream order');
});

CheckoutWorker::scenario('concurrency limit' => sub {
    my $rx = CheckoutWorker::receiver();
    my @e = map { CheckoutWorker::add_event(rx => { slow => 600 }) } 1 .. 6;
    my $w = CheckoutWorker->start(name => 'conc',
        groups => [receipt => { url => $rx->url('/rx'), concurrency => 2 }]);
    $w->wait_for_outcome(ce_id => $_->{ce_id}, result => 'done',
                         _timeout => 20) for @e;
    my @r = $rx->requests;
    is(scalar @r, 6, 'six deliveries');
    is(max_in_flight(@r), 2, 'at most 2 in flight, and 2 at some point');
    is_deeply([sort map { $_->{headers}{'ce-id'} } @r],
              [sort map { $_->{ce_id} } @e], 'each event once');
});

CheckoutWorker::scenario('two workers share a group: each event once' => sub {
    my $rx = CheckoutWorker::receiver();
    my %g = (receipt => { url => $rx->url('/rx'), concurrency => 3 });
    my @w = map { CheckoutWorker->start(name => "share$_", groups => [%g]) }
            1, 2;
    my @e = map { CheckoutWorker::add_event(rx => { slow => 50,
                                                     effect => 1 }) } 1 .. 30;
    for my $e (@e) {
        CheckoutWorker::wait_for(sub {
            grep { $_->outcomes(ce_id => $e->{ce_id}, result => 'done') } @w;
        }, 20);
    }
    my %by;
    for my $w (@w) {
        $by{ $_->{ce_id} }{ $w->name }++
            for $w->outcomes(result => 'done');
    }
    is(scalar(grep { $by{ $_->{ce_id} } } @e), 30, 'all 30 done');
    is(scalar(grep { keys %{ $by{ $_->{ce_id} } || {} } > 1 } @e), 0,
       'none done by both');
    is($rx->count, 30, 'one delivery each');
    is_deeply($rx->effects, { map { ("receipt:$_->{ce_id}" => 1) } @e },
              'each effect once');
    my %n;
    $n{$_}++ for map { keys %{ $by{ $_->{ce_id} } || {} } } @e;
    note("share: " . join(', ', map { "$_=$n{$_}" } sort keys %n));
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::scenario('concurrency 1: a retry is not stuck behind the '
                         . 'later events of its subject' => sub {
    my $rx = CheckoutWorker::receiver();
    my $subj = CheckoutWorker::random_id();
    # Six events of one subject, the first answered 503 once: the later
    # five fill the read buffer (4 x concurrency) while its retry is due.
    my @e = (
        CheckoutWorker::add_event(id => "${subj}_1", subject => $subj,
                                  rx => { flaky => 1 }),
        map { CheckoutWorker::add_event(id => "${subj}_$_",
                                        subject => $subj, state => 0) } 2 .. 6,
    );
    # concurrency undef: the worker's default (1). The retry waits at most
    # 50 ms; min-idle (20 s) is what a stuck retry would wait for.
    my $w = CheckoutWorker->start(name => 'retryc1', groups => [
        receipt => { url => $rx->url('/rx'), concurrency => undef,
                     'backoff-base' => '50ms', 'backoff-cap' => '50ms',
                     'min-idle' => '20s', timeout => '2s',
                     'max-attempts' => 3 }]);
    like($w->config_text, qr/^(?!.*concurrency)/s,
         'no concurrency line: the default, 1');
    my ($last) = $w->wait_for_outcome(id => $e[-1]{entry}, result => 'done',
                                      _timeout => 10);
    ok($last, 'the last event is done within 10 s (min-idle is 20 s)')
        or diag($w->log_tail(10));
    my @r = $rx->requests;
    is(CheckoutWorker::ids(@r), join(' ', map { $_->{ce_id} } $e[0], @e),
       'the receiver saw them in stream order, the first one\'s retry '
       . 'before the second');
    CheckoutWorker::one_at_a_time('one at a time', @r);
    ok(@r >= 2 && defined $r[0]{reply_time}
       && $r[1]{time} - $r[0]{reply_time} < 3,
       sprintf('the retry came %.2f s after the 503 (backoff <= 50 ms)',
               @r >= 2 ? $r[1]{time} - ($r[0]{reply_time} // 0) : -1));
    my ($retry) = $w->outcomes(id => $e[0]{entry}, result => 'retry');
    ok($retry && $retry->{next_ms} <= 50, 'result=retry, next_ms '
                                          . ($retry ? $retry->{next_ms} : '?'));
    is_deeply([map { $_->{id} } $w->outcomes(result => 'done')],
              [map { $_->{entry} } @e], 'done in stream order');
    my ($d1) = $w->outcomes(id => $e[0]{entry}, result => 'done');
    is($d1 && $d1->{attempt}, 2, 'the first at attempt 2');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::finish();
