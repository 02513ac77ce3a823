# checkout-worker integration: the admin port's commands through the real
# redis-cli, as operators use them (docs/worker.md, "Admin port"): PING,
# INFO (sections and per-group counters matching what happened), PENDING,
# DLQ, REPLAY id|ALL bringing dead letters back to success, PAUSE/RESUME,
# HELP. Bad input, AUTH, many clients and SHUTDOWN:
# t/020-worker-admin-input.t.
#
#   prove -It/lib t/020-worker-admin.t

use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use CheckoutRedis ();
use CheckoutWorker ();

CheckoutWorker::setup();

my $S = $CheckoutWorker::Stream;
my $DLQ = $CheckoutWorker::Dlq;

# redis-cli's raw output as lines.
sub cli_lines {
    my ($w, @args) = @_;
    my ($out, $rc, $err) = $w->cli(@args);
    diag("redis-cli @args: exit $rc: $err") if $rc != 0;
    return split /\n/, $out;
}

CheckoutWorker::scenario('PING, INFO and its counters' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'info', groups => [
        receipt => { url => $rx->url('/rx'), types => 'OrderConfirmed',
                     'max-attempts' => 3 },
        audit => { url => $rx->url('/ok?audit') },
    ]);

    my ($out, $rc) = $w->cli('PING');
    is($out, "PONG\n", 'redis-cli PING: PONG');
    is($rc, 0, 'redis-cli exit 0');
    ($out) = $w->cli('PING', 'hello there');
    is($out, "hello there\n", 'PING msg: the msg');
    ($out) = $w->cli('ping');
    is($out, "PONG\n", 'command names are case-insensitive');

    my @ev = (
        CheckoutWorker::add_event(),                          # done
        CheckoutWorker::add_event(rx => { flaky => 1 }),      # retry, done
        CheckoutWorker::add_event(rx => { status => 404 }),   # dead
        CheckoutWorker::add_event(type => 'CheckoutDeclined'), # skipped
    );
    $w->wait_for_outcome(group => 'receipt', ce_id => $_->{ce_id},
                         result => qr/^(?:done|dead|skipped)$/) for @ev;
    $w->wait_for_outcome(group => 'audit', ce_id => $_->{ce_id},
                         result => 'done') for @ev;

    ($out, $rc) = $w->cli('INFO');
    is($rc, 0, 'redis-cli INFO: exit 0');
    my $i = CheckoutWorker::parse_info($out);
    is_deeply($i->{_sections}, ['Server', 'Redis', 'Groups'],
              'INFO: sections Server, Redis, Groups');
    is($i->{process_id}, $w->pid, 'process_id');
    is($i->{consumer}, 'info', 'consumer');
    is($i->{config_file}, $w->config_file, 'config_file');
    like($i->{version} // '', qr/^\d+\.\d+/, 'version');
    like($i->{uptime_in_seconds} // '', qr/^\d+$/, 'uptime_in_seconds');
    like($i->{admin_clients} // '', qr/^[1-9]\d*$/, 'admin_clients >= 1');
    is($i->{redis_link}, 'up', 'redis_link:up');
    is($i->{redis_address}, '127.0.0.1:' . CheckoutRedis::port(),
       'redis_address');
    like($i->{redis_reconnects} // '', qr/^\d+$/, 'redis_reconnects');

    CheckoutWorker::ok_wait('INFO pending/lag settle at 0', sub {
        my $g = $w->info->{group_receipt} or return 0;
        ($g->{pending} // '') eq '0' && ($g->{lag} // '') eq '0';
    });
    my $g = $w->info->{group_receipt} || {};
    my %want = (stream => $S, state => 'running', succeeded => 2,
                retried => 1, dead_lettered => 1, skipped => 1,
                duplicates => 0, in_flight => 0, waiting => 0, pending => 0,
                lag => 0);
    is_deeply({ map { $_ => $g->{$_} } keys %want }, \%want,
              'group_receipt: the counters match what happened')
        or diag("INFO: " . join(',', map { "$_=$g->{$_}" } sort keys %$g));
    my %count;
    $count{ $_->{result} }++ for $w->outcomes(group => 'receipt');
    is($g->{succeeded}, $count{done} // 0, 'succeeded = result=done lines');
    is($g->{retried}, $count{retry} // 0, 'retried = result=retry lines');
    ok(defined $g->{processed} && $g->{processed} >= 4,
       "processed counts every event at least ($g->{processed})");
    like($g->{failed} // '', qr/^\d+$/, "failed ($g->{failed})");
    my $a = $w->info->{group_audit} || {};
    is($a->{succeeded}, 4, 'group_audit: succeeded=4');

    # INFO section
    ($out) = $w->cli('INFO', 'groups');
    my $gi = CheckoutWorker::parse_info($out);
    is_deeply($gi->{_sections}, ['Groups'], 'INFO groups: that section only');
    ok($gi->{group_receipt} && $gi->{group_audit}, 'both groups');
    ($out) = $w->cli('INFO', 'SERVER');
    $gi = CheckoutWorker::parse_info($out);
    is_deeply($gi->{_sections}, ['Server'], 'INFO SERVER: case-insensitive');

    # (redis-cli answers "help" itself: the raw client asks the worker)
    my $help = $w->admin('HELP');
    ok(ref $help eq 'ARRAY' && @$help, 'HELP: an array of lines');
    my $text = join "\n", ref $help eq 'ARRAY' ? @$help : ();
    like($text, qr/\bREPLAY\b/i, 'HELP lists REPLAY');
    like($text, qr/\bPENDING\b/i, 'and PENDING');
});

CheckoutWorker::scenario('PENDING' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'pend', groups => [
        receipt => { url => $rx->url('/rx'), timeout => '8s',
                     'min-idle' => '9s', concurrency => 2 }]);
    my @ev = map { CheckoutWorker::add_event(rx => { slow => 3000 }) } 1, 2;
    $rx->wait_for_requests(2, 15);

    my $r = $w->admin('PENDING', 'receipt');
    is(ref $r, 'ARRAY', 'PENDING receipt: an array');
    is(scalar @{ $r || [] }, 2, 'of the two in flight');
    my $p = ref $r eq 'ARRAY' && $r->[0] || [];
    is($p->[0], $ev[0]{entry}, '[0]: the entry id');
    is($p->[1], 'pend', '[1]: the consumer');
    like($p->[2] // '', qr/^\d+$/, '[2]: idle ms');
    ok(!ref $p->[2] && defined $p->[2] && $p->[2] < 9000, '[2]: idle ms < 9 s');
    is($p->[3], 1, '[3]: deliveries');

    my @l = cli_lines($w, 'PENDING', 'receipt');
    is(scalar @l, 8, 'redis-cli PENDING receipt: 2 x 4 lines');
    is($l[0], $ev[0]{entry}, 'redis-cli: the first id');
    is($l[1], 'pend', 'redis-cli: the consumer');
    @l = cli_lines($w, 'PENDING', 'receipt', 1);
    is(scalar @l, 4, 'PENDING receipt 1: one entry');
    my ($out) = $w->cli('--no-raw', 'PENDING', 'receipt', 1);
    like($out, qr/^1\)\ 1\)\ "\Q$ev[0]{entry}\E"\n
                  \ {3}2\) \ "pend"\n
                  \ {3}3\) \ \(integer\)\ \d+\n
                  \ {3}4\) \ \(integer\)\ 1\n$/x,
         'redis-cli --no-raw: [id, consumer, (integer) idle, (integer) 1]');

    ($out) = $w->cli('PENDING', 'nosuch');
    is($out, "ERR no such group 'nosuch'\n\n", 'unknown group');
    ($out) = $w->cli('PENDING', 'receipt', 'many');
    like($out, qr/^ERR value is not an integer or out of range/,
         'count not an integer');
    ($out) = $w->cli('PENDING');
    like($out, qr/^ERR wrong number of arguments for 'pending' command/,
         'no group: wrong arity');

    $w->wait_for_outcome(ce_id => $_->{ce_id}, result => 'done') for @ev;
    CheckoutWorker::ok_wait('PENDING receipt: empty once done', sub {
        my $x = $w->admin('PENDING', 'receipt');
        ref $x eq 'ARRAY' && !@$x;
    });
});

CheckoutWorker::scenario('DLQ and REPLAY' => sub {
    my $rx = CheckoutWorker::receiver();
    $rx->set_switch($_, 404) for qw(one two);
    my $w = CheckoutWorker->start(name => 'replay', groups => [
        receipt => { url => $rx->url('/rx') },
        audit => { url => $rx->url('/ok?audit') },
    ]);
    my $one = CheckoutWorker::add_event(rx => { switch => 'one' });
    my @two = map { CheckoutWorker::add_event(rx => { switch => 'two' }) }
              1 .. 2;
    $w->wait_for_outcome(group => 'receipt', ce_id => $_->{ce_id},
                         result => 'dead') for $one, @two;
    $w->wait_for_outcome(group => 'audit', ce_id => $_->{ce_id},
                         result => 'done') for $one, @two;
    my @dl = CheckoutWorker::dlq();
    is(scalar @dl, 3, 'three dead letters');

    # DLQ [count]: newest first, [dlq-id, [field, value, ...]]
    my $r = $w->admin('DLQ');
    is(ref $r, 'ARRAY', 'DLQ: an array');
    is_deeply([map { $_->[0] } @{ $r || [] }], [reverse map { $_->[0] } @dl],
              'DLQ: every dead letter, newest first');
    is_deeply($r->[0][1], $dl[-1][2], 'DLQ: each [id, [field, value...]]')
        if ref $r eq 'ARRAY' && @$r;
    $r = $w->admin('DLQ', 1);
    is(scalar @{ ref $r eq 'ARRAY' ? $r : [] }, 1, 'DLQ 1: one');
    my @l = cli_lines($w, 'DLQ', 1);
    is($l[0], $dl[-1][0], 'redis-cli DLQ 1: the newest id first');
    my %f = @{ $dl[-1][2] };
    ok(scalar(grep { $_ eq $f{original_id} } @l), 'and its original_id');
    my ($out) = $w->cli('DLQ', 'ten');
    like($out, qr/^ERR value is not an integer or out of range/,
         'DLQ ten: not an integer');
    ($out) = $w->cli('DLQ', 1, 2);
    like($out, qr/^ERR wrong number of arguments for 'dlq' command/,
         'DLQ 1 2: wrong arity');

    # REPLAY id: the receiver now succeeds.
    $rx->set_switch('one', 200);
    my ($d1) = grep { $_->[1]{original_id} eq $one->{entry} } @dl;
    ($out) = $w->cli('REPLAY', $d1->[0]);
    is($out, "1\n", 'redis-cli REPLAY <id>: 1');
    my ($done) = $w->wait_for_outcome(group => 'receipt',
        ce_id => $one->{ce_id}, result => 'done');
    ok($done, 'the replayed event is delivered and done');
    isnt($done && $done->{id}, $one->{entry}, 'as a new entry');
    my @again = CheckoutWorker::requests_for($rx, $one->{ce_id});
    my @rr = grep { $_->{path} eq '/rx' } @again;
    is(scalar @rr, 2, 'receipt got it a second time');
    is($rr[-1]{headers}{'idempotency-key'}, "receipt:$one->{ce_id}",
       'same Idempotency-Key') if @rr;
    is($rr[-1]{status}, 200, 'answered 200') if @rr;
    my ($new) = grep { $_->[0] eq ($done->{id} // '') }
                @{ CheckoutWorker::entries($S) };
    is($new && $new->[1]{replay_group}, 'receipt',
       'the new entry has replay_group receipt');
    is($new && $new->[1]{ce_id}, $one->{ce_id}, 'and the original fields');
    ok(!grep({ $_->[0] eq $d1->[0] } CheckoutWorker::dlq()),
       'the dead letter is gone');
    is(CheckoutWorker::state_of($one->{ce_id})->{receipt}, 'done',
       'state receipt=done');
    ok($w->wait_for_outcome(group => 'audit', id => $done->{id},
                            result => 'skipped'),
       'audit skips the replay (for another group)');
    is(scalar(grep { $_->{path} eq '/ok?audit' } @again), 1,
       'audit did not deliver it again');

    # REPLAY ALL
    $rx->set_switch('two', 200);
    ($out) = $w->cli('replay', 'all');
    is($out, "2\n", 'redis-cli REPLAY ALL: 2');
    ok($w->wait_for_outcome(group => 'receipt', ce_id => $_->{ce_id},
                            result => 'done'),
       "$_->{ce_id}: done") for @two;
    is(CheckoutRedis::xlen($DLQ), 0, 'the DLQ is empty');

    ($out) = $w->cli('REPLAY', '1-1');
    is($out, "0\n", 'REPLAY of an unknown id: 0');
    ($out) = $w->cli('REPLAY', 'ALL');
    is($out, "0\n", 'REPLAY ALL with nothing dead: 0');
    ($out) = $w->cli('REPLAY', 'not-an-id');
    like($out, qr/^ERR /, "REPLAY not-an-id: an error ($out)");
    ($out) = $w->cli('REPLAY');
    like($out, qr/^ERR wrong number of arguments for 'replay' command/,
         'REPLAY: wrong arity');
    is($rx->count('/rx'), 6, 'receipt: 3 dead + 3 replayed deliveries');
});

CheckoutWorker::scenario('PAUSE and RESUME' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'pause', groups => [
        receipt => { url => $rx->url('/rx') },
        audit => { url => $rx->url('/ok?audit') },
    ]);
    my ($out) = $w->cli('PAUSE', 'receipt');
    is($out, "OK\n", 'redis-cli PAUSE receipt: OK');
    is($w->info->{group_receipt}{state}, 'paused', 'INFO: state=paused');
    is($w->info->{group_audit}{state}, 'running', 'the other group runs');

    my @ev = map { CheckoutWorker::add_event() } 1 .. 3;
    $w->wait_for_outcome(group => 'audit', ce_id => $_->{ce_id},
                         result => 'done') for @ev;
    CheckoutWorker::ok_holds('nothing delivered to the paused group (2 s)',
        sub { $rx->count('/rx') == 0 }, 2);
    # (a read already blocked in Redis when PAUSE came may hold one entry,
    # undelivered: it counts as pending instead of lag)
    CheckoutWorker::ok_wait('INFO while paused: lag + pending = 3, none in '
                            . 'flight', sub {
        my $g = $w->info->{group_receipt} or return 0;
        ($g->{lag} // 0) + ($g->{pending} // 0) == 3
            && ($g->{in_flight} // '') eq '0';
    }, 15, sub { $w->info->{_text} });

    ($out) = $w->cli('RESUME', 'receipt');
    is($out, "OK\n", 'redis-cli RESUME receipt: OK');
    ok($w->wait_for_outcome(group => 'receipt', ce_id => $_->{ce_id},
                            result => 'done'),
       "$_->{ce_id}: delivered after RESUME") for @ev;
    is($w->info->{group_receipt}{state}, 'running', 'INFO: state=running');

    # A retry is not started while paused.
    my $f = CheckoutWorker::add_event(rx => { flaky => 1, slow => 800,
                                              slow_on => [1] });
    $rx->wait_for_requests(4, 10, '/rx');
    is($w->admin('PAUSE', 'receipt'), 'OK', 'PAUSE during a delivery');
    ok($w->wait_for_outcome(ce_id => $f->{ce_id}, group => 'receipt',
                            result => 'retry'),
       'the in-flight delivery finishes (503: retry)');
    CheckoutWorker::ok_holds('no retry while paused (1.5 s)', sub {
        $rx->calls("receipt:$f->{ce_id}") == 1;
    }, 1.5);
    is($w->admin('RESUME', 'receipt'), 'OK', 'RESUME');
    ok($w->wait_for_outcome(ce_id => $f->{ce_id}, group => 'receipt',
                            result => 'done'), 'then it is retried, done');

    ($out) = $w->cli('PAUSE', 'nosuch');
    like($out, qr/^ERR no such group 'nosuch'/, 'PAUSE nosuch: error');
    ($out) = $w->cli('PAUSE');
    like($out, qr/^ERR wrong number of arguments for 'pause' command/,
         'PAUSE: wrong arity');
    ($out) = $w->cli('RESUME', 'receipt', 'audit');
    like($out, qr/^ERR wrong number of arguments for 'resume' command/,
         'RESUME a b: wrong arity');
});

CheckoutWorker::finish();
