# checkout-worker integration: getting over trouble without losing order or
# entries (the code review's fixes): the commands link to Redis killed in
# the middle of a backlog and while a retry waits, a group that Redis first
# refuses to create, and a held entry that another consumer takes over.
#
# The worker's Redis connections carry names (CLIENT SETNAME):
# "checkout-worker:commands" (the scripts) and
# "checkout-worker:reader:<group>" (XREADGROUP): the tests find and kill
# them by name (CLIENT LIST, CLIENT KILL ID).
#
#   prove -It/lib t/020-worker-recovery.t

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
my $CMD = 'checkout-worker:commands';

# Kills the worker's commands connection and waits (bounded) until it is
# back: a connection of that name with another id. Returns the ids killed
# (empty when there was none to kill).
sub kill_commands_link {
    my @killed = CheckoutRedis::kill_clients($CMD);
    return () unless @killed;
    my %old = map { $_ => 1 } @killed;
    CheckoutWorker::wait_for(sub {
        grep { !$old{$_} } CheckoutRedis::client_ids($CMD);
    }, 10);
    return @killed;
}

CheckoutWorker::scenario('the commands link lost mid-backlog: nothing '
                         . 'dropped, attempt 1, order kept' => sub {
    my $rx = CheckoutWorker::receiver();
    # 300 events of 20 subjects, interleaved: subject s's n-th event is
    # "<s>_<n>".
    my @subjects = map { CheckoutWorker::random_id() } 1 .. 20;
    my @evs;
    for my $n (1 .. 15) {
        for my $s (@subjects) {
            my $e = CheckoutWorker::add_event(id => "${s}_$n", subject => $s,
                state => $n == 1 ? 1 : 0,
                rx => { slow => 40, effect => 1 });
            push @evs, $e;
        }
    }
    my $N = @evs;
    # max-attempts 1: an entry dropped and reclaimed would be a poison
    # message (dead-lettered without ever reaching the receiver).
    my $w = CheckoutWorker->start(name => 'cmdlost', groups => [
        receipt => { url => $rx->url('/rx'), concurrency => 4,
                     'max-attempts' => 1, timeout => '2s',
                     'min-idle' => '3s' }]);
    my $done = sub {
        scalar $w->outcomes(result => qr/^(?:done|duplicate)$/);
    };

    CheckoutWorker::ok_wait('CLIENT LIST: the connections are named '
                            . "$CMD and checkout-worker:reader:receipt", sub {
        CheckoutRedis::client_ids($CMD) == 1
            && CheckoutRedis::client_ids('checkout-worker:reader:receipt')
               == 1;
    }, 10, sub {
        'CLIENT LIST names: ' . join(' ', map { $_->{name} // '' }
                                          CheckoutRedis::clients());
    });
    CheckoutWorker::wait_for(sub { $done->() >= 20 }, 15);

    # Killed five times while the backlog is worked on, each time once the
    # link is back and a few more events are done.
    my @kills;
    for my $k (1 .. 5) {
        my $before = $done->();
        last if $before >= $N - 40;
        my @ids = kill_commands_link();
        last unless @ids;
        push @kills, $before;
        my $after = $done->();
        CheckoutWorker::wait_for(sub { $done->() >= $after + 8 }, 15);
    }
    ok(@kills >= 3, scalar(@kills) . ' kills of the commands connection '
                    . 'with the backlog not done yet (done at each kill: '
                    . join(', ', @kills) . " of $N)");

    CheckoutWorker::ok_wait("an outcome for each of the $N entries", sub {
        scalar($w->outcomes(result => qr/^(?:done|duplicate|dead)$/)) >= $N;
    }, 40, sub { $w->log_tail(10) });
    my @out = $w->outcomes;
    my (%outcomes, @bad_attempt);
    for my $l (@out) {
        push @{ $outcomes{ $l->{id} // '' } }, $l;
        push @bad_attempt, $l->{_raw} if ($l->{attempt} // '') ne '1';
    }
    is(scalar(grep { $_->{result} eq 'dead' } @out), 0,
       'no result=dead (no poison message)')
        or diag(join "\n", map { $_->{_raw} }
                CheckoutWorker::first5(grep { $_->{result} eq 'dead' } @out));
    ok(!@bad_attempt, 'every outcome line has attempt=1')
        or diag(scalar(@bad_attempt) . " lines, e.g.\n"
                . join("\n", CheckoutWorker::first5(@bad_attempt)));
    my @not_once = grep {
        my $o = $outcomes{ $_->{entry} } || [];
        @$o != 1 || $o->[0]{result} !~ /^(?:done|duplicate)$/
    } @evs;
    ok(!@not_once, 'each entry has exactly one outcome: done (or duplicate: '
                   . 'the done script ran, its reply was lost with the link)')
        or diag(scalar(@not_once) . ' entries do not, e.g. '
                . join("\n", map { "$_->{entry}: " . join(' | ',
                      map { $_->{_raw} } @{ $outcomes{ $_->{entry} } || [] })
                  } CheckoutWorker::first5(@not_once)));
    my @dup = grep { $_->{result} eq 'duplicate' } @out;
    ok(!grep({ ($_->{reason} // '') !~ /done record found/ } @dup),
       scalar(@dup) . ' duplicates, each of a done record (the reply lost)');
    my @failed = grep { ($_->{msg} // '') =~ /script failed/ }
                 $w->log_lines;
    is(scalar @failed, 0, 'no "script failed" line (nothing was sent while '
                          . 'the link was down)')
        or diag(scalar(@failed) . " lines, e.g. $failed[0]{_raw}");
    my @down = grep { ($_->{msg} // '') eq 'redis link down'
                      && ($_->{link} // '') eq 'commands' } $w->log_lines;
    ok(@down >= @kills, scalar(@down) . ' "redis link down" lines for the '
                        . 'commands link');

    is(CheckoutRedis::xlen($DLQ), 0, 'no dead letter');
    CheckoutWorker::ok_wait('nothing pending at the end', sub {
        !CheckoutWorker::pending($S, 'receipt');
    }, 15, sub {
        my @p = CheckoutWorker::pending($S, 'receipt');
        scalar(@p) . ' pending, e.g. ' . join(' ', @{ $p[0] || [] });
    });
    is(CheckoutRedis::cmd('ZCARD', 'checkout:worker:retry:receipt'), 0,
       'no retry scheduled');
    my @no_record = grep {
        (CheckoutRedis::cmd('GET', CheckoutWorker::done_key('receipt',
                                                            $_->{ce_id}))
         // '') ne $_->{entry}
    } @evs;
    ok(!@no_record, 'a done record for each entry')
        or diag(scalar(@no_record) . ' without, e.g. ' . $no_record[0]{entry});

    # The receiver: each event reached it (more than once only when its
    # reply came while the link was down: at least once), its effect
    # applied once, and per subject in stream order.
    my $effects = $rx->effects;
    my @eff_bad = grep { ($effects->{"receipt:$_->{ce_id}"} // 0) != 1 } @evs;
    ok(!@eff_bad, "each of the $N effects applied exactly once")
        or diag(scalar(@eff_bad) . ' not, e.g. ' . $eff_bad[0]{ce_id} . ': '
                . ($effects->{"receipt:$eff_bad[0]{ce_id}"} // 0));
    my @reqs = $rx->requests;
    note(scalar(@reqs) . " deliveries for $N events");
    my (@order_bad, @overlap);
    for my $s (@subjects) {
        my @r = grep { $_->{headers}{'ce-subject'} eq $s } @reqs;
        my @n = map { ($_->{headers}{'ce-id'} =~ /_(\d+)$/)[0] } @r;
        my @first;
        my %seen;
        push @first, grep { !$seen{$_}++ } @n;
        my $sorted = join ' ', sort { $a <=> $b } @n;
        push @order_bad, "$s: " . join(' ', @n)
            if join(' ', @n) ne $sorted || join(' ', @first) ne
               join(' ', 1 .. 15);
        for my $i (1 .. $#r) {
            push @overlap, "$r[$i]{headers}{'ce-id'}"
                if !defined $r[$i - 1]{reply_time}
                   || $r[$i]{time} < $r[$i - 1]{reply_time};
        }
    }
    ok(!@order_bad, 'per subject, the receiver saw the events in stream '
                    . 'order (a repeat only right after itself)')
        or diag(join "\n", CheckoutWorker::first5(@order_bad));
    ok(!@overlap, 'and one at a time') or diag(join ' ', CheckoutWorker::first5(@overlap));
});

CheckoutWorker::scenario('the commands link lost while a retry waits: the '
                         . 'later event of its subject still waits' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'retrylink', groups => [
        receipt => { url => $rx->url('/rx'), 'backoff-base' => '2s',
                     'backoff-cap' => '2s', 'min-idle' => '10s',
                     timeout => '2s', 'max-attempts' => 3 }]);
    # the retry waits 3 s: time to kill the link meanwhile
    my ($e1, $e2, $due) = CheckoutWorker::held_retry($w, $rx, 3) or return;

    my @k1 = kill_commands_link();
    ok(@k1, "the commands connection killed (CLIENT KILL ID @k1)");
    my @k2 = kill_commands_link();
    ok(@k2, "and again once it was back (CLIENT KILL ID @k2)");
    ok(CheckoutRedis::client_ids($CMD), 'the commands link is back');
    ok(time * 1000 < $due - 500, 'before the retry is due')
        or diag('the test was too slow to kill the link in time');

    my ($l) = $w->wait_for_outcome(id => $e2->{entry}, result => 'done',
                                   _timeout => 20);
    ok($l, "$e2->{ce_id}: done") or diag($w->log_tail);
    my ($l1) = $w->outcomes(id => $e1->{entry}, result => 'done');
    is($l1 && $l1->{attempt}, 2, "$e1->{ce_id}: done at attempt 2");
    my @r = grep { $_->{headers}{'ce-subject'} eq $e1->{subject} }
            $rx->requests;
    is(CheckoutWorker::ids(@r), "$e1->{ce_id} $e1->{ce_id} $e2->{ce_id}",
       'the receiver saw the first event, its retry, then the second');
    CheckoutWorker::one_at_a_time('one at a time', @r);
    ok(@r >= 2 && $r[1]{time} >= $due / 1000 - 0.05,
       'the retry came at its due time, after the link was back')
        or diag(sprintf 'due %.3f, retried %.3f', $due / 1000,
                @r > 1 ? $r[1]{time} : 0);
    is_deeply([map { $_->{id} } grep { $_->{ce_id} =~ /^\Q$e1->{subject}\E_/ }
               $w->outcomes(result => 'done')],
              [$e1->{entry}, $e2->{entry}], 'done in stream order');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::scenario('group creation refused (OOM): retried every '
                         . 'second until Redis takes it' => sub {
    my $rx = CheckoutWorker::receiver();
    my $ev = CheckoutWorker::add_event();     # the stream, without a group
    CheckoutRedis::cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    CheckoutRedis::cmd('CONFIG', 'SET', 'maxmemory', '1');
    my $restored;
    my $ok = eval {
        my (undef, $err) = CheckoutRedis::cmd_err('XGROUP', 'CREATE', $S,
                                                  'probe', '0', 'MKSTREAM');
        like($err // '', qr/^OOM/, 'Redis refuses writes: XGROUP CREATE '
                                   . 'gets ' . ($err // 'no error'));
        my $w = CheckoutWorker->start(name => 'oom',
            groups => [receipt => { url => $rx->url('/ok') }]);
        my $failed = sub {
            grep { ($_->{msg} // '') =~ /^cannot create group receipt\b.*OOM/ }
                 $w->log_lines;
        };
        CheckoutWorker::ok_wait('the failure is logged', sub { $failed->() },
                                10, sub { $w->log_tail(5) });
        my $i = $w->info('groups');
        is($i->{group_receipt}{state}, 'starting',
           'INFO: the group is state=starting')
            or diag($i->{_text});
        CheckoutWorker::ok_wait('and tried again (every second)', sub {
            $failed->() >= 3;
        }, 10, sub { $w->log_tail(5) });
        my @f = $failed->();
        my @t = map { CheckoutWorker::parse_time($_->{ts}) } @f;
        my $gap = @t >= 2 && defined $t[0] && defined $t[1]
                  ? $t[1] - $t[0] : -1;
        ok($gap > 0.5 && $gap < 3,
           sprintf('not in a loop: %.2f s between the first tries', $gap));
        is($rx->count, 0, 'nothing delivered meanwhile');

        CheckoutRedis::cmd('CONFIG', 'SET', 'maxmemory', '0');
        $restored = 1;
        my $t0 = time;
        my $created = $w->wait_for_log(sub {
            ($_[0]{msg} // '') =~ /^created group receipt\b/;
        }, 10);
        ok($created, 'once Redis takes writes again, the group is created: '
                     . ($created ? $created->{_raw} : 'not within 10 s'));
        ok(time - $t0 < 5, sprintf('within a few seconds (%.1f s)',
                                   time - $t0));
        my $groups = CheckoutRedis::cmd('XINFO', 'GROUPS', $S);
        is(scalar @$groups, 1, 'XINFO GROUPS: the group is there');
        ok($w->wait_for_outcome(ce_id => $ev->{ce_id}, result => 'done'),
           'the event written before it is delivered');
        my $e2 = CheckoutWorker::add_event();
        ok($w->wait_for_outcome(ce_id => $e2->{ce_id}, result => 'done'),
           'and a new one');
        is(eval { $w->info('groups')->{group_receipt}{state} }, 'running',
           'INFO: state=running');
        1;
    };
    my $err = $@;
    CheckoutRedis::cmd('CONFIG', 'SET', 'maxmemory', '0') unless $restored;
    die $err unless $ok;
});

CheckoutWorker::scenario('a held entry claimed by another consumer is '
                         . 'released, not delivered' => sub {
    # touched every 2 s (min-idle / 3)
    my ($w, $rx, @e) = CheckoutWorker::held_behind(
        name => 'released', slow_ms => 3500, min_idle => '6s');
    my $c = CheckoutRedis::cmd('XCLAIM', $S, 'receipt', 'other', 0,
                               $e[1]{entry}, 'JUSTID');
    is_deeply($c, [ $e[1]{entry} ],
              "XCLAIM: $e[1]{ce_id} is now consumer other's");

    my $rel = $w->wait_for_log(sub {
        ($_[0]{result} // '') eq 'released' && $_[0]{id} eq $e[1]{entry};
    }, 10);
    ok($rel, 'the worker logs result=released for it: '
             . ($rel ? $rel->{_raw} : 'no such line'));
    my @lines = $w->log_lines;
    my ($pos_rel) = grep { ($lines[$_]{result} // '') eq 'released' }
                    0 .. $#lines;
    my ($pos_done) = grep { ($lines[$_]{result} // '') eq 'done'
                            && $lines[$_]{id} eq $e[0]{entry} } 0 .. $#lines;
    ok(defined $pos_rel && (!defined $pos_done || $pos_rel < $pos_done),
       "while $e[0]{ce_id} was still in flight (the periodic touch noticed)");

    my ($l3) = $w->wait_for_outcome(id => $e[2]{entry}, result => 'done',
                                    _timeout => 15);
    ok($l3, "$e[2]{ce_id}: done (the subject went on)");
    my @r = $rx->requests;
    is(CheckoutWorker::ids(@r), "$e[0]{ce_id} $e[2]{ce_id}",
       "the receiver got the first and the third, never $e[1]{ce_id}");
    CheckoutWorker::one_at_a_time('in order, one at a time', @r);
    is(scalar $w->outcomes(id => $e[1]{entry}, result => qr/^(?!released)/),
       0, "no other outcome for $e[1]{ce_id}");
    my %p = map { ($_->[0] => $_->[1]) }
            CheckoutWorker::pending($S, 'receipt');
    is_deeply(\%p, { $e[1]{entry} => 'other' },
              'pending: only the released entry, still consumer other\'s');
});

CheckoutWorker::scenario('Redis stalls past the watchdog: the worker stays '
                         . 'responsive, drops the link and carries on'
                         => sub {
    my $rx = CheckoutWorker::receiver();
    my @evs = map {
        CheckoutWorker::add_event(rx => { slow => 300, effect => 1 })
    } 1 .. 40;
    my $w = CheckoutWorker->start(name => 'stall', groups => [
        receipt => { url => $rx->url('/rx'), concurrency => 8,
                     timeout => '2s', 'min-idle' => '30s' }]);
    CheckoutWorker::wait_for(sub {
        $w->outcomes(result => 'done') >= 8;
    }, 15);
    my $before = () = $w->outcomes(result => 'done');
    ok($before < @evs, "$before of " . @evs . ' done when Redis stops');

    # SIGSTOP: deliveries in flight end while their scripts cannot be
    # answered; after 10 s the watchdog drops the commands link, and the
    # scripts' callbacks run with no reply.
    CheckoutRedis::pause();
    my ($asked, @unanswered) = (0);
    my $dropped;
    my $until = time + 14;
    while (time < $until) {
        my $conn = eval { $w->admin_conn(2) };
        my $r = $conn ? eval { $conn->cmd('PING') } : undef;
        $asked++;
        push @unanswered, sprintf('%.1f s', 14 - ($until - time))
            unless defined $r && $r eq 'PONG';
        $dropped = grep { ($_->{link} // '') eq 'commands'
                          && ($_->{error} // '') =~ /^no reply within/ }
                   $w->log_lines;
        last if $dropped && time > $until - 2;
        select(undef, undef, undef, 0.5);
    }
    CheckoutRedis::resume();
    ok($dropped, 'the watchdog dropped the commands link (no reply within '
                 . '10000 ms)') or diag($w->log_tail(10));
    ok(!@unanswered, "the admin port answered PING all along ($asked asked)")
        or diag('unanswered at ' . join(', ', @unanswered));

    CheckoutWorker::ok_wait('every event done once Redis is back', sub {
        scalar(grep { CheckoutRedis::cmd('EXISTS',
                          CheckoutWorker::done_key('receipt', $_->{ce_id})) }
               @evs) == @evs;
    }, 30, sub { $w->log_tail(10) });
    my $effects = $rx->effects;
    my @twice = grep { ($effects->{"receipt:$_->{ce_id}"} // 0) != 1 } @evs;
    ok(!@twice, 'each effect applied once')
        or diag(join ' ', map { $_->{ce_id} } @twice);
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::finish();
