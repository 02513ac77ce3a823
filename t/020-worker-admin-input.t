# checkout-worker integration: the admin port under bad input, AUTH, many
# clients at once, and SHUTDOWN (docs/worker.md, "Admin port"). Every case
# goes through the real redis-cli where redis-cli can send it, through a
# raw socket where it cannot (inline commands, garbage bytes, broken
# frames); each gets -ERR, and the worker keeps serving: PING answers and
# deliveries go on.
#
#   prove -It/lib t/020-worker-admin-input.t

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

# The worker still answers and still delivers.
sub still_serving {
    my ($w, $rx, $what) = @_;
    my ($out) = $w->cli('PING');
    is($out, "PONG\n", "after $what: redis-cli PING still answers");
    my $ev = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $ev->{ce_id}, result => 'done'),
       "after $what: deliveries go on");
}

# The error text of a reply, or what it was instead.
sub err_of {
    my ($r) = @_;
    return $r->{error} if ref $r eq 'HASH';
    return 'not an error: ' . (ref $r ? 'array' : $r // 'nil');
}

# A raw exchange: sends $bytes on a new connection; returns the first reply
# (or the error text when none came) and whether the server then closed.
sub raw {
    my ($w, $bytes, %o) = @_;
    my $c = $w->admin_conn(5);
    $c->send_raw($bytes);
    my $reply = eval { $c->read_reply(5) };
    $reply = "<no reply: $@>" unless defined $reply || !$@;
    my $closed = $c->closed_within($o{close_wait} // 5);
    $c->disconnect;
    return ($reply, $closed);
}

CheckoutWorker::scenario('bad input through redis-cli' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'badcli',
        groups => [receipt => { url => $rx->url('/ok') }]);

    my @cases = (
        [['FOO'], qr/^ERR unknown command 'FOO'/i, 'unknown command'],
        [['foo', 'bar'], qr/^ERR unknown command 'foo'/i,
         'unknown command with arguments'],
        [['PING', 'a', 'b'],
         qr/^ERR wrong number of arguments for 'ping' command/,
         'PING a b: wrong arity'],
        [['INFO', 'a', 'b'], qr/^ERR /, 'INFO a b: an error'],
        [['PENDING', 'receipt', '-5'],
         qr/^ERR /, 'PENDING receipt -5: an error'],
        [['PENDING', 'receipt', '99999999999999999999999'],
         qr/^ERR value is not an integer or out of range/,
         'PENDING: count overflows'],
        [['DLQ', '1.5'], qr/^ERR value is not an integer or out of range/,
         'DLQ 1.5: not an integer'],
        [['DLQ', ''], qr/^ERR value is not an integer or out of range/,
         'DLQ "": not an integer'],
        [['SHUTDOWN', 'NOW', 'PLEASE'],
         qr/^ERR wrong number of arguments for 'shutdown' command|^ERR syntax/,
         'SHUTDOWN with junk: an error, no shutdown'],
        [['AUTH', 'x'], qr/^ERR AUTH/,
         'AUTH without a password configured'],
        [['AUTH'], qr/^ERR wrong number of arguments for 'auth' command/,
         'AUTH: wrong arity'],
        [["\xff\xfebin"], qr/^ERR unknown command/,
         'binary command name'],
    );
    for my $c (@cases) {
        my ($args, $re, $desc) = @$c;
        my ($out, $rc, $err) = $w->cli(@$args);
        like($out, $re, "redis-cli: $desc") or diag("stderr: $err");
    }
    ok($w->running, 'the worker runs');

    # A frame over 64 KiB, and more than 1024 arguments.
    my ($out, $rc, $err) = $w->cli('PING', 'x' x 70000);
    like($out . $err, qr/ERR Protocol error/,
         'redis-cli PING <70 KB>: ERR Protocol error');
    ($out, $rc, $err) = $w->cli('PING', ('a') x 1100);
    like($out . $err, qr/ERR Protocol error/,
         'redis-cli PING with 1100 arguments: ERR Protocol error');
    ($out) = $w->cli('ECHO', 'x' x 60000);
    like($out, qr/^ERR unknown command 'ECHO'/i,
         'a 60 KB frame is still read (and ECHO is unknown)');
    still_serving($w, $rx, 'bad input through redis-cli');
    is($w->info->{group_receipt}{state}, 'running', 'the group runs');
});

CheckoutWorker::scenario('bad bytes on a raw socket' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'badraw',
        groups => [receipt => { url => $rx->url('/ok') }]);

    my @cases = (
        ["PING\r\n", 'an inline command'],
        ["\x00\xff\xfe\x80garbage\r\n", 'garbage bytes'],
        ["*1\r\n\$abc\r\n", 'a bad bulk length'],
        ["*x\r\n", 'a bad array length'],
        ["*1\r\n:5\r\n", 'an integer instead of a bulk string'],
        ["*2000\r\n", 'an array of 2000 elements'],
        ["*1\r\n\$100000\r\n" . ('x' x 1000), 'a bulk string over 64 KiB'],
        ["*1\r\n\$4\r\nPINGxx", 'a bulk string without CRLF'],
        ['$4' . "\r\nPING\r\n", 'a bulk string instead of an array'],
    );
    for my $c (@cases) {
        my ($bytes, $desc) = @$c;
        my ($reply, $closed) = raw($w, $bytes);
        like(ref $reply eq 'HASH' ? $reply->{error} : "not an error: "
                 . ($reply // 'nil'),
             qr/^ERR Protocol error/, "$desc: -ERR Protocol error");
        ok($closed, "$desc: then the connection is closed");
        ok($w->running, "$desc: the worker runs");
    }

    # Bytes split across writes, pipelined commands, a client that leaves
    # half a frame.
    my $c = $w->admin_conn;
    my $frame = CheckoutWorker::Conn::encode('PING', 'split');
    for my $byte (split //, $frame) {
        $c->send_raw($byte);
        sleep 0.001;
    }
    is($c->read_reply, 'split', 'a frame sent byte by byte');
    $c->send_raw(join '', map { CheckoutWorker::Conn::encode(@$_) }
                 ['PING'], ['PING', 'two'], ['FOO'], ['PING', 'four']);
    is_deeply([map { $c->read_reply } 1 .. 4],
              ['PONG', 'two', { error => "ERR unknown command 'FOO'" },
               'four'],
              'pipelined commands: replies in order, errors in place');
    $c->disconnect;
    my $half = $w->admin_conn;
    $half->send_raw("*2\r\n\$4\r\nPING\r\n\$10\r\nab");
    $half->disconnect;

    # A client that sends nothing and one that never reads its replies.
    my $idle = $w->admin_conn;
    my $deaf = $w->admin_conn;
    $deaf->send_raw(CheckoutWorker::Conn::encode('INFO') x 2000);
    still_serving($w, $rx, 'raw bad input');
    $_->disconnect for $idle, $deaf;
    still_serving($w, $rx, 'the deaf client left');
});

CheckoutWorker::scenario('AUTH' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'auth', admin_password => 's3cret',
        groups => [receipt => { url => $rx->url('/ok') }]);

    my ($out) = $w->cli('PING');
    is($out, "NOAUTH Authentication required.\n\n",
       'redis-cli PING without AUTH: NOAUTH');
    for my $cmd (['INFO'], ['PENDING', 'receipt'], ['DLQ'], ['REPLAY', 'ALL'],
                 ['PAUSE', 'receipt'], ['SHUTDOWN'], ['FOO']) {
        ($out) = $w->cli(@$cmd);
        like($out, qr/^NOAUTH Authentication required\./,
             "redis-cli @$cmd without AUTH: NOAUTH");
    }
    ok($w->running, 'SHUTDOWN without AUTH did nothing');
    is(err_of($w->admin_conn->cmd('INFO', 'groups')),
       'NOAUTH Authentication required.', 'INFO on a raw connection: NOAUTH');

    ($out) = $w->cli('AUTH', 'wrong');
    like($out, qr/^WRONGPASS/, 'AUTH wrong: WRONGPASS');
    ($out) = $w->cli('AUTH', 's3cret');
    is($out, "OK\n", 'AUTH s3cret: OK');
    ($out) = $w->cli_opts({ auth => 1 }, 'PING');
    is($out, "PONG\n", 'redis-cli -a s3cret PING: PONG');
    ($out) = $w->cli_opts({ auth => 1 }, 'INFO', 'server');
    like($out, qr/^process_id:\d+\r?$/m, 'redis-cli -a s3cret INFO server');

    # One connection: commands from stdin.
    ($out) = $w->cli_opts({ stdin => "PING\nAUTH nope\nPING\nAUTH s3cret\n"
                                   . "PING\nINFO server\n" });
    my @l = grep { length } split /\n/, $out;
    my @noauth = grep { /^NOAUTH/ } @l;
    ok(@noauth >= 2, 'one session: NOAUTH before AUTH');
    ok(scalar(grep { /^WRONGPASS/ } @l), 'WRONGPASS for a bad one');
    ok(scalar(grep { $_ eq 'OK' } @l), 'OK for the good one');
    ok(scalar(grep { $_ eq 'PONG' } @l), 'then PONG');
    ok(scalar(grep { /^process_id:\d+/ } @l), 'then INFO');

    my $c = $w->admin_conn;
    is(err_of($c->cmd('PING')), 'NOAUTH Authentication required.',
       'raw: PING before AUTH: NOAUTH');
    like(err_of($c->cmd('AUTH', 'bad')), qr/^WRONGPASS/,
         'raw: AUTH bad: WRONGPASS');
    is(err_of($c->cmd('PING')), 'NOAUTH Authentication required.',
       'raw: still NOAUTH');
    like(err_of($c->cmd('AUTH', 'a', 'b', 'c')),
         qr/^ERR wrong number of arguments for 'auth' command/,
         'raw: AUTH a b c: wrong arity');
    is($c->cmd('AUTH', 's3cret'), 'OK', 'raw: AUTH s3cret: OK');
    is($c->cmd('PING'), 'PONG', 'raw: PING: PONG');
    is($c->cmd('PAUSE', 'receipt'), 'OK', 'raw: PAUSE receipt: OK');
    is($c->cmd('RESUME', 'receipt'), 'OK', 'raw: RESUME receipt: OK');
    $c->disconnect;
    my $ev = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $ev->{ce_id}, result => 'done'),
       'deliveries go on');
});

CheckoutWorker::scenario('many admin clients at once' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'many',
        groups => [receipt => { url => $rx->url('/rx'), concurrency => 4 }]);
    my $n = 60;
    my @c = map { $w->admin_conn } 1 .. $n;
    # All send, then all read.
    $c[$_]->send_raw(CheckoutWorker::Conn::encode('PING', "c$_")) for 0 .. $#c;
    my @got = map { scalar eval { $c[$_]->read_reply } } 0 .. $#c;
    is_deeply(\@got, [map { "c$_" } 0 .. $#c], "$n clients: each its reply");
    my $i = $w->info;
    ok(($i->{admin_clients} // 0) >= $n,
       "INFO admin_clients >= $n ($i->{admin_clients})");

    # Deliveries while they are connected, and redis-cli processes at once.
    my @ev = map { CheckoutWorker::add_event(rx => { slow => 300 }) } 1 .. 4;
    my @pids;
    for my $k (1 .. 10) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my ($out) = $w->cli('INFO');
            POSIX::_exit($out =~ /^# Groups/m ? 0 : 1);
        }
        push @pids, $pid;
    }
    my @fail = grep { waitpid($_, 0); $? != 0 } @pids;
    is(scalar @fail, 0, '10 redis-cli INFO at once: all answered');
    ok($w->wait_for_outcome(ce_id => $_->{ce_id}, result => 'done'),
       'delivered meanwhile') for @ev;

    my @again = map { scalar eval { $_->cmd('PING') } } @c;
    is(scalar(grep { ($_ // '') eq 'PONG' } @again), $n,
       'all still connected and answered');
    $_->disconnect for @c;
    CheckoutWorker::ok_wait('INFO admin_clients drops when they leave', sub {
        ($w->info->{admin_clients} // 99) <= 2;
    });
});

CheckoutWorker::scenario('SHUTDOWN' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'shutdown',
        groups => [receipt => { url => $rx->url('/rx') }]);
    my $ev = CheckoutWorker::add_event(rx => { slow => 1000 });
    ok($rx->wait_for_requests(1, 15), 'a delivery in flight');
    my ($out, $rc) = $w->cli('SHUTDOWN');
    is($rc, 0, 'redis-cli SHUTDOWN: exit 0');
    is($out, "OK\n", 'redis-cli SHUTDOWN: OK');
    my $exit = $w->wait_exit(20);
    $w->exit_ok($exit, 'the worker exits 0');
    ok($w->outcomes(ce_id => $ev->{ce_id}, result => 'done'),
       'after finishing the delivery in flight');
});

CheckoutWorker::finish();
