# checkout-worker integration: the process's life (docs/worker.md,
# "Running"): SIGTERM drain, SIGHUP log reopening, a Redis restart mid-run,
# and `checkout-worker -t` on good and bad config files.
#
#   prove -It/lib t/020-worker-lifecycle.t

use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use CheckoutRedis ();
use CheckoutWorker ();
use Time::HiRes qw(time sleep);

CheckoutWorker::setup();

my $S = $CheckoutWorker::Stream;
my $Bin = CheckoutWorker::binary();
my $Dir = CheckoutWorker::dir();

CheckoutWorker::scenario('SIGTERM: the in-flight delivery finishes, '
                         . 'exit 0, nothing lost' => sub {
    my $rx = CheckoutWorker::receiver();
    my %g = (receipt => { url => $rx->url('/rx'), timeout => '5s',
                          'min-idle' => '6s' });
    my $w = CheckoutWorker->start(name => 'drain', groups => [%g],
                                  global => ['shutdown-timeout' => '5s']);
    my $e1 = CheckoutWorker::add_event(rx => { slow => 1500, effect => 1 });
    ok($rx->wait_for_requests(1, 15), 'a slow delivery is in flight');
    $w->signal('TERM');
    my $e2 = CheckoutWorker::add_event(rx => { effect => 1 });
    my $exit = $w->wait_exit(20);
    $w->exit_ok($exit, 'exit 0 after SIGTERM');

    my @r = $rx->requests;
    is(scalar @r, 1, 'no delivery started after SIGTERM');
    is($r[0]{status}, 200, 'the in-flight one was answered 200');
    ok($w->outcomes(ce_id => $e1->{ce_id}, result => 'done'),
       'and logged result=done');
    ok(!grep({ $_->[0] eq $e1->{entry} }
             CheckoutWorker::pending($S, 'receipt')),
       'and acknowledged');
    ok($w->log_lines && (grep { ($_->{msg} // '') =~ /shut|stop|exit/i }
                         $w->log_lines),
       'a shutdown message in the log');

    # Nothing lost: the second event is still there for the next worker.
    $w->start;
    ok($w->wait_for_outcome(ce_id => $e2->{ce_id}, result => 'done'),
       'the restarted worker delivers the event written after SIGTERM');
    is_deeply($rx->effects, { map { ("receipt:$_->{ce_id}" => 1) } $e1, $e2 },
              'each effect once');
});

CheckoutWorker::scenario('SIGTERM: a delivery longer than shutdown-timeout '
                         . 'stays pending' => sub {
    my $rx = CheckoutWorker::receiver();
    my %g = (receipt => { url => $rx->url('/rx'), timeout => '3s',
                          'min-idle' => '4s' });
    my $w1 = CheckoutWorker->start(name => 'cut1', groups => [%g],
                                   global => ['shutdown-timeout' => '1s']);
    my $ev = CheckoutWorker::add_event(
        rx => { hang => 1, hang_on => [1], effect => 1 });
    ok($rx->wait_for_requests(1, 15), 'a delivery hangs');
    $w1->signal('TERM');
    my $exit = $w1->wait_exit(15);
    $w1->exit_ok($exit, 'exit 0 once shutdown-timeout is over');
    ok($exit && $exit->{elapsed} < 10, 'in bounded time ('
       . ($exit ? sprintf('%.1f s', $exit->{elapsed}) : 'still running') . ')');
    my @p = CheckoutWorker::pending($S, 'receipt');
    is(scalar @p, 1, 'the entry is left pending');
    is($p[0][1], 'cut1', 'to the stopped consumer') if @p;
    is_deeply($rx->effects, {}, 'no effect yet');

    my $w2 = CheckoutWorker->start(name => 'cut2', groups => [%g]);
    ok($w2->wait_for_outcome(ce_id => $ev->{ce_id}, result => 'done',
                             _timeout => 25),
       'another worker reclaims it after min-idle and finishes it');
    is_deeply($rx->effects, { "receipt:$ev->{ce_id}" => 1 }, 'effect once');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::scenario('SIGHUP reopens the log file' => sub {
    my $rx = CheckoutWorker::receiver();
    my $log = "$Dir/hup.log";
    my $w = CheckoutWorker->start(name => 'hup', log => $log,
        groups => [receipt => { url => $rx->url('/ok') }]);
    my $e1 = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $e1->{ce_id}, result => 'done'),
       'logged to hup.log');
    rename $log, "$log.1" or die "rename: $!";
    $w->signal('HUP');
    CheckoutWorker::ok_wait('a new hup.log is created', sub { -e $log });
    my $e2 = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $e2->{ce_id}, result => 'done'),
       'the next outcome goes to the new hup.log');
    ok(!grep({ ($_->{ce_id} // '') eq $e2->{ce_id} } $w->log_lines("$log.1")),
       'not to the renamed one');
    ok(scalar(grep { ($_->{ce_id} // '') eq $e1->{ce_id} }
              $w->log_lines("$log.1")),
       'which keeps the earlier lines');
    ok($w->running, 'the worker still runs');
    is($w->admin('PING'), 'PONG', 'and answers');
    $w->signal('INT');
    $w->exit_ok($w->wait_exit(20), 'SIGINT: exit 0');
});

CheckoutWorker::scenario('Redis restart (empty): reconnect, group '
                         . 'recreated, delivery goes on' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'relink',
        groups => [receipt => { url => $rx->url('/ok') }]);
    my $e1 = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $e1->{ce_id}, result => 'done'),
       'delivering');

    my $lines_before = () = $w->log_lines;
    my $t_down = time;
    CheckoutRedis::stop();
    my $down = $w->wait_for_log(sub {
        ($_[0]{level} // '') =~ /warn|error/
            && ($_[0]{msg} // '') =~ /redis/i;
    });
    ok($down, 'a warn/error line about Redis: ' . ($down ? $down->{_raw} : ''));
    my $info = eval { $w->info };
    is($info && $info->{redis_link}, 'down', 'INFO: redis_link:down');
    is($w->admin('PING'), 'PONG', 'the admin port works meanwhile');

    # Down for a while: the worker retries with a backoff, not in a loop.
    sleep 1.5;
    my $lines_down = () = $w->log_lines;
    my $rate = ($lines_down - $lines_before) / (time - $t_down);
    ok($rate < 50, sprintf('the log is not flooded while Redis is down '
                           . '(%.1f lines/s)', $rate));

    CheckoutRedis::restart();
    my $up = $w->wait_for_log(sub {
        ($_[0]{msg} // '') =~ /redis/i && $_[0]{_raw} =~ /\bup\b|connected/i
            && ($_[0]{ts} // '') ge ($down->{ts} // '');
    }, 20);
    ok($up, 'a line about the link being up again');
    CheckoutWorker::ok_wait('INFO: redis_link:up, redis_reconnects >= 1', sub {
        my $i = eval { $w->info } or return 0;
        ($i->{redis_link} // '') eq 'up' && ($i->{redis_reconnects} // 0) >= 1;
    }, 20);

    my $e2 = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $e2->{ce_id}, result => 'done',
                            _timeout => 20),
       'a new event is delivered') or diag($w->log_tail);
    my $groups = CheckoutRedis::cmd('XINFO', 'GROUPS', $S);
    is(scalar @$groups, 1, 'the group was created again');
    is($rx->count, 2, 'each event once');
});

CheckoutWorker::scenario('Redis restart with its data, a delivery in '
                         . 'flight' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'relink2',
        groups => [receipt => { url => $rx->url('/rx'), timeout => '4s',
                                'min-idle' => '5s' }]);
    my $ev = CheckoutWorker::add_event(
        rx => { slow => 1500, slow_on => [1], effect => 1 });
    ok($rx->wait_for_requests(1, 15), 'a delivery is in flight');
    CheckoutRedis::stop(save => 1);
    $rx->wait_for_replies(1, 10);
    is_deeply($rx->effects, { "receipt:$ev->{ce_id}" => 1 },
              'answered (and applied) while Redis is down');
    CheckoutRedis::restart(keep => 1);
    is(CheckoutRedis::xlen($S), 1, 'Redis is back with the entry');

    ok($w->wait_for_outcome(ce_id => $ev->{ce_id}, result => 'done',
                            _timeout => 25),
       'the worker finishes it') or diag($w->log_tail);
    is_deeply($rx->effects, { "receipt:$ev->{ce_id}" => 1 }, 'effect once');
    CheckoutWorker::ok_wait('acknowledged', sub {
        !CheckoutWorker::pending($S, 'receipt');
    }, 20);
    is(CheckoutWorker::state_of($ev->{ce_id})->{receipt}, 'done',
       'state done');
    my $e2 = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $e2->{ce_id}, result => 'done',
                            _timeout => 20),
       'and goes on with new events');
});

CheckoutWorker::scenario('Redis down when the worker starts' => sub {
    my $rx = CheckoutWorker::receiver();
    CheckoutRedis::stop();
    my $w = CheckoutWorker->start(name => 'nolink',
        groups => [receipt => { url => $rx->url('/ok') }]);
    is($w->admin('PING'), 'PONG', 'the worker runs and answers');
    CheckoutWorker::ok_wait('INFO: redis_link:down', sub {
        (eval { $w->info->{redis_link} } // '') eq 'down';
    });
    my $i = $w->info;
    is($i->{group_receipt}{pending}, -1, 'INFO: pending -1 (unknown)');
    is($i->{group_receipt}{lag}, -1, 'INFO: lag -1 (unknown)');
    CheckoutRedis::restart();
    my $ev = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $ev->{ce_id}, result => 'done',
                            _timeout => 20),
       'once Redis is up: the group is created and the event delivered');
});

CheckoutWorker::scenario('redis-password' => sub {
    my $rx = CheckoutWorker::receiver();
    CheckoutRedis::stop();
    CheckoutRedis::start(requirepass => 'r3dis');
    my $w = CheckoutWorker->start(name => 'rpass',
        global => ['redis-password' => 'r3dis'],
        groups => [receipt => { url => $rx->url('/ok') }]);
    my $ev = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $ev->{ce_id}, result => 'done'),
       'with the right password: delivered');
    $w->stop_ok;

    my $bad = CheckoutWorker->start(name => 'rpass-bad',
        global => ['redis-password' => 'wrong'],
        groups => [receipt => { url => $rx->url('/ok') }]);
    my $l = $bad->wait_for_log(sub {
        ($_[0]{level} // '') =~ /warn|error/ && $_[0]{_raw} =~ /WRONGPASS|auth/i
    });
    ok($l, 'a wrong one: an error line: ' . ($l ? $l->{_raw} : ''));
    is($bad->admin('PING'), 'PONG', 'the worker keeps running');
    is(eval { $bad->info->{redis_link} }, 'down', 'INFO: redis_link:down');
    $bad->stop_ok;
    # the next scenarios: a server without a password again
    CheckoutRedis::stop();
    CheckoutRedis::start();
});

# ---- checkout-worker -t -c FILE -------------------------------------------

sub write_conf {
    my ($name, $text) = @_;
    my $f = "$Dir/$name.conf";
    open my $out, '>', $f or die "$f: $!";
    print $out $text;
    close $out;
    return $f;
}

CheckoutWorker::scenario('checkout-worker -t and -v' => sub {
    my $good = CheckoutWorker->new(name => 'good',
        global => ['dead-letter-stream' => 'dlq', 'redis-db' => 0,
                   'done-ttl' => '1h', retention => '30m'],
        groups => [receipt => { url => 'http://127.0.0.1:9/x',
                                types => 'OrderConfirmed CheckoutDeclined',
                                'schema-versions' => '1 2' },
                   review => { url => 'https://example.test/review' }]);
    my $gf = write_conf('good', $good->config_text);
    my ($out, $rc, $err) = CheckoutWorker::run($Bin, '-t', '-c', $gf);
    is($rc, 0, '-t on a good file: exit 0') or diag("$out$err");
    like("$out$err", qr/^checkout-worker: \Q$gf\E: syntax is ok$/m,
         '"checkout-worker: FILE: syntax is ok"');

    my $head = "redis 127.0.0.1:1\nadmin 127.0.0.1:2\n";
    my $grp = "group receipt\n    url http://127.0.0.1:9/x\n";
    my @bad = (
        ['unknown directive', "redis 127.0.0.1:1\nconcurency 4\n$grp", 2,
         qr/concurency/],
        ['unknown group directive', "$head$grp    retries 3\n", 5,
         qr/retries/],
        ['bad duration', "$head$grp    timeout 5 parsecs\n", 5, qr/timeout/],
        ['bad duration unit', "$head$grp    timeout 5y\n", 5, qr/timeout|5y/],
        ['concurrency 0', "$head$grp    concurrency 0\n", 5,
         qr/concurrency/],
        ['bad number', "redis-db abc\n$grp", 1, qr/abc|redis-db/],
        ['min-idle <= timeout',
         "$head$grp    timeout 10s\n    min-idle 5s\n", 6, qr/min-idle/],
        ['group without url', "$head\ngroup receipt\n    timeout 1s\n", 4,
         qr/url/],
        ['bad redis address', "redis nowhere\n$grp", 1, qr/redis|nowhere/],
        ['bad schema-versions', "$head$grp    schema-versions x\n", 5,
         qr/schema-versions/],
        ['unterminated quote', "$head$grp    url \"http://x\n", 5, qr/./],
        ['duplicate group directive',
         "$head$grp    concurrency 2\n    concurrency 3\n", 6,
         qr/concurrency/],
    );
    for my $b (@bad) {
        my ($name, $text, $line, $re) = @$b;
        (my $fn = $name) =~ s/\W+/-/g;
        my $f = write_conf("bad-$fn", $text);
        my ($o, $c, $e) = CheckoutWorker::run($Bin, '-t', '-c', $f);
        is($c, 1, "$name: exit 1");
        like($e, qr/^checkout-worker: \Q$f\E:$line: .*$re/m,
             "$name: \"checkout-worker: FILE:$line: ...\" on stderr")
            or diag("stdout: $o\nstderr: $e");
    }

    my $none = "$Dir/does-not-exist.conf";
    ($out, $rc, $err) = CheckoutWorker::run($Bin, '-t', '-c', $none);
    is($rc, 1, 'a missing file: exit 1');
    like($err, qr/^checkout-worker: \Q$none\E: /m, 'names the file');

    my $empty = write_conf('empty', "# nothing\n");
    ($out, $rc, $err) = CheckoutWorker::run($Bin, '-t', '-c', $empty);
    is($rc, 1, 'no group at all: exit 1');
    like($err, qr/^checkout-worker: \Q$empty\E(?::\d+)?: /m, 'names the file');

    # Running (not -t) with a bad file: the same message, exit 1.
    my $bf = write_conf('bad-run', "$head$grp    concurrency 0\n");
    ($out, $rc, $err) = CheckoutWorker::run({ timeout => 15 }, $Bin, '-c',
                                            $bf);
    is($rc, 1, 'running with a bad file: exit 1');
    like($err, qr/^checkout-worker: \Q$bf\E:5: /m, 'with the message');

    ($out, $rc, $err) = CheckoutWorker::run($Bin, '-v');
    is($rc, 0, '-v: exit 0');
    like("$out$err", qr/checkout-worker.*\d+\.\d+/, "-v: the version: $out");
});

CheckoutWorker::scenario('checkout-worker -t: group names the state hash or '
                         . 'the keys cannot take' => sub {
    my $head = "redis 127.0.0.1:1\nadmin 127.0.0.1:2\n";
    my $url = "    url http://127.0.0.1:9/x\n";
    # The module's fields of the checkout state hash, where each group
    # writes a field of its own name.
    for my $name (qw(status orderId created updated step eventId)) {
        my $f = write_conf("reserved-$name",
                           "${head}group receipt\n$url\ngroup $name\n$url");
        my ($o, $c, $e) = CheckoutWorker::run($Bin, '-t', '-c', $f);
        is($c, 1, "group $name: exit 1");
        is($e, "checkout-worker: $f:6: group name \"$name\" is a field of "
               . "the checkout state hash (the task's field would overwrite "
               . "it)\n", "group $name: the message, with the line")
            or diag("stdout: $o");
    }
    my $long = 'g' x 65;
    my $f = write_conf('long-name', "${head}group $long\n$url");
    my ($o, $c, $e) = CheckoutWorker::run($Bin, '-t', '-c', $f);
    is($c, 1, 'a group name of 65 bytes: exit 1');
    is($e, "checkout-worker: $f:3: group name \"$long\" is longer than 64 "
           . "bytes\n", 'the message') or diag("stdout: $o");

    # what is still fine: 64 bytes, and names that only look alike
    for my $ok ('g' x 64, 'Status', 'status2', 'order-id') {
        my $g = write_conf('fine-' . length($ok) . "-$ok",
                           "${head}group $ok\n$url");
        ($o, $c, $e) = CheckoutWorker::run($Bin, '-t', '-c', $g);
        is($c, 0, 'group ' . (length $ok > 20 ? length($ok) . ' bytes' : $ok)
                  . ': exit 0') or diag("$o$e");
    }

    # Running (not -t) with one: the same message, exit 1.
    my $run = write_conf('reserved-run', "${head}group status\n$url");
    ($o, $c, $e) = CheckoutWorker::run({ timeout => 15 }, $Bin, '-c', $run);
    is($c, 1, 'running with group status: exit 1');
    like($e, qr/^checkout-worker: \Q$run\E:3: group name "status" is a field/m,
         'with the message');
});

CheckoutWorker::finish();
