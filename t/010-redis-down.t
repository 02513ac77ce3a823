# When Redis is down (README "When Redis is down"): checkouts still answer
# their honest outcome at once, their events go to the spool (fsync'd before
# the reply), and once Redis answers again every spooled event reaches the
# stream exactly once (the state's eventId guard), the spool files are gone
# and the log says so.  Redis is stopped, restarted, paused (SIGSTOP) and
# resumed by the blocks' --- init and checks (t/lib/CheckoutRedis.pm); every
# wait is bounded.
#
# nginx runs with a master and two workers here: each worker has its own
# Redis connection and its own spool file, and a worker replays the files of
# workers that are gone.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use CheckoutRedis ();
use CheckoutEvents ();
use Test::More ();
use Time::HiRes qw(time sleep);

master_on();
workers(2);

CheckoutEvents::setup();

# How long a reply may take on top of what the block waits for (steps are
# local and answer in a few ms).
our $Margin = 0.4 * CheckoutTest::slack();

# Outcome per location, and whether it publishes an event.
our %Expect = (
    '/checkout'         => [201, 'confirmed',       1],
    '/checkout-pending' => [202, 'pending_review',  1],
    '/checkout-decline' => [402, 'declined',        1],
    '/checkout-3ds'     => [202, 'requires_action', 0],
    '/checkout-fail'    => [503, 'failed',          0],
);

our @Ids;          # the block's checkouts, in order: [id, uri]

# POSTs a checkout on $sock (or a new connection); checks its honest
# outcome, and that it came quickly (within $max seconds).  Returns its id.
sub checkout {
    my ($name, $uri, %o) = @_;
    my ($code, $status) = @{ $Expect{$uri} };
    my $res = CheckoutTest::http_request(
        method => 'POST', uri => $uri,
        body => $o{body} // '{"customerId":"cus_1","items":[{"sku":"b","quantity":1}]}',
        ($o{sock} ? (sock => $o{sock}) : (close => 1)), timeout => 3);
    my $d = CheckoutTest::json_decode($res->{body} // '') || {};
    Test::More::is($res->{status}, $code, "$name - $uri answers $code")
        or Test::More::diag($res->{error} // $res->{body});
    Test::More::is($d->{status}, $status, "$name - $uri says $status");
    my $max = $o{max} // $Margin;
    Test::More::ok(defined $res->{elapsed} && $res->{elapsed} <= $max,
                   "$name - $uri answers within ${max}s")
        or Test::More::diag("elapsed: " . ($res->{elapsed} // 'none'));
    my $id = $d->{checkoutId} // '';
    push @Ids, [$id, $uri] if $id;
    return $id;
}

sub event_ids { map { $_->[0] } grep { $Expect{$_->[1]}[2] } @Ids }

# Every spooled line, and the checkouts each one names.
sub spooled_ids {
    my %in;
    for my $line (CheckoutEvents::spool_lines()) {
        my $cmd = CheckoutTest::json_decode($line);
        next unless ref $cmd eq 'ARRAY';
        $in{$_}++ for grep { /^chk_[A-Za-z0-9]{22}$/ } @$cmd;
    }
    return \%in;
}

# After Redis came back: every event exactly once (waited for), every
# state written, the spool directory empty (waited for).
sub all_replayed {
    my ($name, %o) = @_;
    my @events = event_ids();
    my $counts = CheckoutEvents::wait_for_events(\@events, $o{timeout} || 12);
    my $empty = CheckoutRedis::wait_for(
        sub { !CheckoutEvents::spool_files() }, 5);
    Test::More::ok($empty, "$name - the spool files are gone")
        or Test::More::diag("spool dir: @{[ CheckoutEvents::spool_files() ]}");
    # the replay is over: whatever was to be appended is there
    $counts = CheckoutEvents::counts();
    CheckoutEvents::exactly_once(
        "$name - each of the " . @events . " events is in the stream exactly once",
        \@events, $counts);
    my $extra = grep { my $id = $_; !grep { $_ eq $id } @events } keys %$counts;
    Test::More::is($extra, 0, "$name - nothing else is in the stream");

    for my $c (@Ids) {
        my ($id, $uri) = @$c;
        my $state = CheckoutRedis::hgetall("checkout:$id");
        Test::More::is($state->{status}, $Expect{$uri}[1],
                       "$name - the state of the $uri checkout was written");
    }
    return $counts;
}

# The entries of the checkouts made on one connection (one worker, one
# spool file), from the $from-th checkout on, are in the order the
# checkouts were decided.
sub in_order {
    my ($name, $from) = @_;
    my %mine = map { $_->[0] => 1 } @Ids[$from .. $#Ids];
    my @want = grep { $mine{$_} } event_ids();
    my @got = grep { $mine{$_} }
              map { $_->[1]{ce_id} } @{ CheckoutEvents::entries() };
    Test::More::is("@got", "@want", "$name - the events are in their order");
}

# Redis clients other than this test's own connection.
sub other_clients {
    my $me = CheckoutRedis::cmd('CLIENT', 'ID');
    return grep { /\bid=(\d+)\b/ && $1 != $me }
           split /\n/, CheckoutRedis::cmd('CLIENT', 'LIST');
}

# ---- checks --------------------------------------------------------------------

# Redis was stopped by --- init; the block's checkout (confirmed) answered.
# More checkouts, one of each outcome, on one connection (one worker, one
# spool file); all answer at once and are spooled; then Redis is started
# again: each event once, in order, states written, spool empty; the status
# endpoint reads the replayed state.
CheckoutTest::define_check(stopped_then_restarted => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    @Ids = ([$doc->{checkoutId}, '/checkout']);

    my $sock = CheckoutTest::http_connect();
    for my $uri ('/checkout-pending', '/checkout-decline', '/checkout-3ds',
                 '/checkout-fail', '/checkout') {
        checkout($name, $uri, sock => $sock);
    }
    close $sock;

    my @files = CheckoutEvents::spool_files();
    Test::More::ok(scalar(grep { /^redis-0-\d+\.spool$/ } @files),
                   "$name - a redis-0-PID.spool file is in the spool dir")
        or Test::More::diag("spool dir: @files");
    my $spooled = spooled_ids();
    my @missing = grep { !$spooled->{$_->[0]} } @Ids;
    Test::More::is(scalar @missing, 0,
                   "$name - every checkout's command is in the spool")
        or Test::More::diag("missing: " . join ' ', map { "@$_" } @missing);
    Test::More::is(CheckoutRedis::pid(), undef, "$name - Redis is still down");

    CheckoutRedis::restart();
    all_replayed($name);
    in_order($name, 1);

    my $first = $Ids[0][0];
    my $res = CheckoutTest::http_request(method => 'GET',
                                         uri => "/checkout/$first", close => 1);
    my $d = CheckoutTest::json_decode($res->{body} // '') || {};
    Test::More::is("$res->{status} " . ($d->{status} // ''), '200 confirmed',
                   "$name - the status endpoint reads the replayed state");
});

# The block's checkout went to Redis (Redis up).  Then Redis is paused
# (SIGSTOP) mid-run: a checkout answers within checkout_redis_timeout plus
# a margin and is spooled; after resume its event is in the stream exactly
# once, although Redis also ran the command that timed out (it was in the
# socket when Redis stopped), and the replay is logged.
CheckoutTest::define_check(paused_then_resumed => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $timeout = ($block->redis_timeout_s // 0.1) * CheckoutTest::slack();
    @Ids = ([$doc->{checkoutId}, '/checkout']);
    CheckoutEvents::exactly_once("$name - the first event is in the stream",
                                 [$doc->{checkoutId}], CheckoutEvents::counts());

    CheckoutRedis::cmd('CONFIG', 'RESETSTAT');
    CheckoutRedis::pause();
    my $t0 = time;
    my $sock = CheckoutTest::http_connect();
    my $id = checkout($name, '/checkout', sock => $sock,
                      max => $timeout + $Margin);
    Test::More::ok(time - $t0 >= $timeout - 0.02,
                   "$name - the checkout waited for checkout_redis_timeout");
    # the second one on the same worker: its connection was dropped
    my $id2 = checkout($name, '/checkout-decline', sock => $sock,
                       max => $timeout + $Margin);
    close $sock;
    my $spooled = spooled_ids();
    Test::More::ok($spooled->{$id} && $spooled->{$id2},
                   "$name - both checkouts are in the spool");

    CheckoutRedis::resume();
    all_replayed($name);
    # how often the two events' script ran: more than twice means that
    # a command that timed out ran too, and the guard held
    my $stats = CheckoutRedis::cmd('INFO', 'commandstats');
    my ($calls) = $stats =~ /cmdstat_eval:calls=(\d+)/;
    Test::More::note("EVAL calls since the pause: " . ($calls // 0));
});

# Redis stopped (--- init): a burst of 30 checkouts on 10 connections at
# once, spread over both workers; then Redis is back: all 30 events exactly
# once.
CheckoutTest::define_check(burst => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    @Ids = ([$doc->{checkoutId}, '/checkout']);
    my $t0 = time;
    my @res = CheckoutTest::run_clients(
        conns => 10, requests => 3, timeout => 10,
        make => sub {
            my ($conn, $seq) = @_;
            return (method => 'POST', uri => '/checkout',
                    body => qq({"customerId":"cus_$conn","seq":$seq}));
        });
    my $took = time - $t0;
    my @ok = grep { ($_->{status} // 0) == 201 } @res;
    Test::More::is(scalar @ok, 30, "$name - all 30 checkouts answered 201")
        or Test::More::diag(join "\n", map { $_->{error} // "$_->{status} $_->{body}" }
                            grep { ($_->{status} // 0) != 201 } @res);
    Test::More::ok($took < 5 * CheckoutTest::slack(),
                   "$name - the burst took a few seconds at most")
        or Test::More::diag("took $took s");
    for my $r (@ok) {
        my $d = CheckoutTest::json_decode($r->{body}) || {};
        push @Ids, [$d->{checkoutId}, '/checkout'] if $d->{checkoutId};
    }
    my %uniq = map { $_->[0] => 1 } @Ids;
    Test::More::is(scalar keys %uniq, 31, "$name - 30 (and the block's) distinct checkout ids");
    my $spooled = spooled_ids();
    Test::More::is(scalar(grep { $spooled->{$_} } keys %uniq), 31,
                   "$name - all of them are in the spool");

    CheckoutRedis::restart();
    all_replayed($name, timeout => 15);
});

# A spool file of a worker that is gone (a pid no process has) holding a
# command the module spooled itself, for an event already in Redis: it is
# replayed (the file goes away) and the event is not appended again.
CheckoutTest::define_check(gone_worker_file => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;

    CheckoutRedis::stop();    # and restart() starts it empty
    @Ids = ();
    my $id = checkout($name, '/checkout-pending');
    my @lines = grep { index($_, $id) >= 0 } CheckoutEvents::spool_lines();
    Test::More::is(scalar @lines, 1, "$name - the checkout was spooled once");
    CheckoutRedis::restart();
    all_replayed($name);

    # the same line again, as a gone worker's file, twice
    my $dir = CheckoutEvents::spool_dir();
    my $dead = CheckoutEvents::dead_pid();
    open my $out, '>', "$dir/redis-0-$dead.spool" or die "$dir: $!";
    print $out @lines, @lines;
    close $out;
    my $gone = CheckoutRedis::wait_for(sub { !CheckoutEvents::spool_files() }, 5);
    Test::More::ok($gone, "$name - the gone worker's file was replayed");
    CheckoutEvents::exactly_once("$name - its event is still in the stream once",
                                 [event_ids()], CheckoutEvents::counts());
});

# Eight checkouts spooled while Redis is down; their lines are also copied
# into eight files of gone workers, one each.  Once Redis is back, the two
# workers share the files out between them: every file replayed and gone,
# every event once, and no complaint in the log about a file the other
# worker took first.
CheckoutTest::define_check(many_gone_files => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    @Ids = ([$doc->{checkoutId}, '/checkout']);

    checkout($name, '/checkout') for 1 .. 7;
    my @lines = CheckoutEvents::spool_lines();
    Test::More::is(scalar @lines, 8, "$name - eight lines spooled");
    my $dir = CheckoutEvents::spool_dir();
    my $pid = CheckoutEvents::dead_pid();
    for my $line (@lines) {
        $pid-- while kill 0, $pid or $!{EPERM};
        open my $out, '>', "$dir/redis-0-$pid.spool" or die "$dir: $!";
        print $out $line;
        close $out;
        $pid--;
    }

    CheckoutRedis::restart();
    all_replayed($name, timeout => 15);
});

# A spool line that cannot be replayed, next to an event line the module
# spooled, in the file of a gone worker: one that Redis refuses
# (--- bad_line: refused) or one that is not JSON (--- bad_line: garbage).
# The good event is replayed once; the file, bad line included, is kept
# aside as NAME.rejected (not replayed again) and the log says so.
CheckoutTest::define_check(bad_line => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $kind = $block->bad_line // 'refused';
    $kind =~ s/\s+//g;
    @Ids = ();

    CheckoutRedis::stop();
    my $id = checkout($name, '/checkout');
    my @lines = grep { index($_, $id) >= 0 } CheckoutEvents::spool_lines();
    Test::More::is(scalar @lines, 1, "$name - the checkout was spooled");

    my $dir = CheckoutEvents::spool_dir();
    my $dead = CheckoutEvents::dead_pid();
    my ($bad, $marker) = $kind eq 'garbage'
        ? ("this is not a spooled command\n", 'this is not a spooled')
        : ('["EVAL","return redis.call(\'NO-SUCH-COMMAND\')","3","k1","k2",""'
           . (',"x"' x 13) . "]\n",
           'NO-SUCH-COMMAND');
    open my $out, '>', "$dir/redis-0-$dead.spool" or die "$dir: $!";
    print $out $bad, @lines;
    close $out;

    CheckoutRedis::restart();
    CheckoutEvents::wait_for_events([$id], 12);
    sleep 2.5 * CheckoutTest::slack();    # a few more replay rounds
    CheckoutEvents::exactly_once("$name - the good event is in the stream once",
                                 [$id], CheckoutEvents::counts());
    Test::More::is(CheckoutRedis::hgetall("checkout:$id")->{status},
                   'confirmed', "$name - the good state is written");

    my @left = CheckoutEvents::spool_lines();
    Test::More::ok(scalar(grep { index($_, $marker) >= 0 } @left),
                   "$name - the bad line is still on disk")
        or Test::More::diag("spool dir: @{[ CheckoutEvents::spool_files() ]}");
    my @aside = grep { /\.rejected$/ } CheckoutEvents::spool_files();
    Test::More::is(scalar @aside, 1, "$name - its file is kept aside: @aside");
    Test::More::is(scalar(CheckoutEvents::spool_files()), 1,
                   "$name - and nothing else is left to replay");
});

# Redis stopped (--- init) and both workers killed after their checkouts
# were spooled: the master starts new workers, which replay the files of
# the workers that are gone once Redis is back.
CheckoutTest::define_check(workers_killed => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    @Ids = ([$doc->{checkoutId}, '/checkout']);

    SKIP: {
        my $master = do {
            open my $in, '<', $Test::Nginx::Util::PidFile or undef;
            $in ? (scalar <$in>) =~ /(\d+)/ && $1 : undef;
        };
        my @workers = $master ? CheckoutEvents::children($master) : ();
        Test::More::skip("$name - no worker processes (master off)", 6)
            unless @workers;

        for (1 .. 5) {
            checkout($name, $_ % 2 ? '/checkout' : '/checkout-decline');
        }
        my @files = grep { /\.spool$/ } CheckoutEvents::spool_files();
        Test::More::ok(scalar @files, "$name - spool files: @files");

        kill 'KILL', @workers;
        my $respawned = CheckoutRedis::wait_for(sub {
            my @now = CheckoutEvents::children($master);
            @now == @workers && !grep { my $w = $_; grep { $_ == $w } @workers } @now;
        }, 5);
        Test::More::ok($respawned, "$name - the master started new workers");

        CheckoutRedis::restart();
        all_replayed($name);
    }
});

# The only [alert] lines are the master's about the workers we killed.
CheckoutTest::define_check(only_kill_alerts => sub {
    my ($block) = @_;
    my @bad = grep { /\[(?:alert|crit)\]/ && !/exited on signal 9/ }
              CheckoutEvents::error_log_lines();
    Test::More::is(scalar @bad, 0, $block->name . " - no other [alert] or [crit]")
        or Test::More::diag(join '', @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
});

# Each worker has its own connection, made when it starts; the master
# has none.
CheckoutTest::define_check(one_connection_per_worker => sub {
    my ($block) = @_;
    my $name = $block->name;
    my @c;
    CheckoutRedis::wait_for(sub { @c = other_clients(); @c >= 2 }, 3);
    sleep 0.3 * CheckoutTest::slack();    # and no more than that
    @c = other_clients();
    my $want = $Test::Nginx::Util::UseValgrind ? 1 : 2;
    Test::More::is(scalar @c, $want, "$name - $want connections to Redis")
        or Test::More::diag(join "\n", @c);
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: with Redis up: one connection per worker, events go straight to the stream
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- redis_event
ce_type: "OrderConfirmed"
--- checkout_check: one_connection_per_worker
--- no_error_log
[error]
spooled



=== TEST 2: Redis stopped: every outcome answers at once, is spooled; Redis back: each event once, in order
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location = /checkout-pending {
        checkout;
        checkout_step authorize /_svc/pay/503 on_error=pending;
    }
    location = /checkout-decline {
        checkout;
        checkout_step authorize /_svc/pay/decline;
    }
    location = /checkout-3ds {
        checkout;
        checkout_step authorize /_svc/pay/3ds;
    }
    location = /checkout-fail {
        checkout;
        checkout_step authorize /_svc/pay/500;
    }
    location ~ ^/checkout/(?<cid>[^/]+)$ {
        checkout_status $cid;
    }
--- init
CheckoutRedis::stop();
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_123"
--- checkout_check: stopped_then_restarted
--- error_log eval
[qr/\[warn\].*checkout chk_[A-Za-z0-9]{22}: .*event spooled/,
 qr/checkout spool .*replayed/]
--- no_error_log
[crit]
[alert]
not replayed



=== TEST 3: Redis paused mid-run: the checkout answers within checkout_redis_timeout, its event lands once after resume
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location = /checkout-decline {
        checkout;
        checkout_step authorize /_svc/pay/decline;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: paused_then_resumed
--- error_log eval
[qr/\[warn\].*event spooled/,
 qr/checkout spool .*replayed/]
--- no_error_log
[crit]
[alert]



=== TEST 4: checkout_redis_timeout 400ms: a paused Redis holds the checkout that long, no longer
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    checkout_redis_timeout 400ms;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location = /checkout-decline {
        checkout;
        checkout_step authorize /_svc/pay/decline;
    }
--- redis_timeout_s: 0.4
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: paused_then_resumed
--- error_log
event spooled
--- no_error_log
[crit]
[alert]



=== TEST 5: a burst of 30 checkouts while Redis is down, then up: all 30 events exactly once
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- init
CheckoutRedis::stop();
--- request
POST /checkout
{"customerId":"cus_0"}
--- timeout: 1
--- error_code: 201
--- checkout_check: burst
--- error_log
event spooled
replayed
--- no_error_log
[crit]
[alert]



=== TEST 6: a gone worker's spool file is replayed; an event already in Redis is not appended again
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location = /checkout-pending {
        checkout;
        checkout_step authorize /_svc/pay/503 on_error=pending;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_check: gone_worker_file
--- no_error_log
[crit]
[alert]



=== TEST 7: many gone workers' files: both workers replay them, each event once, no [alert]
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- init
CheckoutRedis::stop();
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 201
--- checkout_check: many_gone_files
--- error_log
replayed
--- no_error_log
[crit]
[alert]



=== TEST 8: a spool line Redis refuses stays on disk, the log says so; the good line next to it is replayed once
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
GET /checkout
--- error_code: 405
--- bad_line: refused
--- checkout_check: bad_line
--- error_log eval
[qr/\[alert\].*checkout spool .*redis refused an event: ERR /,
 qr/\[alert\].*checkout spool: 1 events cannot be replayed, kept in ".*\.rejected"/]
--- no_error_log
[crit]



=== TEST 9: a spool line that is not JSON stays on disk, the log says so; the good line next to it is replayed once
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
--- request
GET /checkout
--- error_code: 405
--- bad_line: garbage
--- checkout_check: bad_line
--- error_log eval
[qr/\[alert\].*checkout spool .*a line is not an event: "this is not a spooled command/,
 qr/\[alert\].*checkout spool: 1 events cannot be replayed, kept in ".*\.rejected"/]



=== TEST 10: workers killed while Redis is down: the new workers replay the files of the gone ones
(Needs worker processes; under valgrind nginx runs without a master.)
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /checkout {
        checkout;
        checkout_step validate /_svc/cart/ok;
        checkout_step create   /_svc/orders/ok;
    }
    location = /checkout-decline {
        checkout;
        checkout_step authorize /_svc/pay/decline;
    }
--- skip_eval
1: $ENV{TEST_NGINX_USE_VALGRIND}
--- init
CheckoutRedis::stop();
--- request
POST /checkout
{"customerId":"cus_1"}
--- timeout: 1
--- error_code: 201
--- checkout_check: workers_killed only_kill_alerts
--- error_log eval
[qr/\[alert\].*exited on signal 9/,
 qr/checkout spool .*replayed/]
