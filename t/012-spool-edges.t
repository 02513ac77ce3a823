# The spool's edges (README "When Redis is down", "Idempotency", and the
# fixes of the commit "Redis review fixes: graceful stops, spool validation
# and batches, ownership"):
#
#   - a spool line that is not the module's event script ("[]",
#     '["FLUSHALL"]') is never sent: no worker dies, Redis runs nothing of
#     it, the file is kept aside as NAME.rejected, its good line replayed;
#   - an event script that failed half-way (WRONGTYPE on the stream) leaves
#     no guard behind, so its replay appends the event, once;
#   - a refusal Redis may lift (OOM) is retried, not set aside;
#   - a large spool replays in batches while live checkouts answer at once;
#   - a late spooled idempotency record leaves a newer checkout's key alone;
#   - an Idempotency-Key that is not printable ASCII is no key;
#   - a relative checkout_spool is resolved against nginx's prefix; an
#     unwritable one is said at start.
#
# What the blocks look at is what an operator sees: the replies, Redis, the
# files in the spool directory and the error log.  Redis is stopped,
# restarted and reconfigured by the blocks (t/lib/CheckoutRedis.pm); before
# every block it runs again, empty, with no memory limit, and the spool
# directory is empty (t/lib/CheckoutEvents.pm).  Every wait is bounded.
#
# nginx runs with a master and ONE worker: the live checkouts share the
# worker's Redis connection with its replay, and the spool timer (one round
# a second) is that worker's alone, which TEST 2 relies on.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use CheckoutRedis ();
use CheckoutEvents ();
use CheckoutProc ();
use File::Basename ();
use File::Path ();
use File::Temp qw(tempdir);
use Test::More ();
use Time::HiRes qw(time sleep);

master_on();
workers(1);

our $Cart = '{"customerId":"cus_1","currency":"EUR",'
          . '"items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],'
          . '"payment":{"method":"card","token":"tok_visa"}}';

# A checkout answers at once even when its event goes to the spool.
our $Margin = 0.5 * CheckoutTest::slack();

my $ID = CheckoutTest::id_re();

# The relative spool directory of TEST 7, resolved against nginx's prefix
# (the server root): "../<server root's name>.spool-rel", beside the server
# root rather than in it, since CPAN's runner removes the server root before
# each block and bails out when it holds anything the runner did not make.
# Made once (nginx checks it when it starts), emptied before each block,
# removed at the end.
our $RelSpool = '../' . File::Basename::basename(server_root()) . '.spool-rel';
$ENV{TEST_NGINX_REL_SPOOL} = $RelSpool;

sub rel_spool_dir { server_root() . "/$RelSpool" }

File::Path::make_path(rel_spool_dir());
CheckoutProc::at_exit(sub { File::Path::remove_tree(rel_spool_dir()) });

# TEST 8: a spool directory the worker cannot write.  chmod does not stop
# root (the workers run as root here when the tests do), so as root it is
# a path that does not exist.
our $Unwritable;
if ($> == 0) {
    $Unwritable = "/nonexistent/checkout-spool-$$";
} else {
    $Unwritable = tempdir('checkout-ro-spool-XXXXXXXX', DIR => '/tmp',
                          CLEANUP => 1);
    chmod 0500, $Unwritable or die "chmod $Unwritable: $!";
}
$ENV{TEST_NGINX_UNWRITABLE_SPOOL} = $Unwritable;

# Runs after CheckoutEvents' own preprocessor (the last added runs first):
# Redis is up and empty then.
add_block_preprocessor(sub {
    my ($block) = @_;

    # TEST 3 sets a memory limit; no other block may inherit it
    CheckoutRedis::cmd('CONFIG', 'SET', 'maxmemory', '0');
    CheckoutRedis::cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');

    my $rel = rel_spool_dir();
    opendir my $dh, $rel or die "$rel: $!";
    unlink map { "$rel/$_" } grep { !/^\.\.?$/ } readdir $dh;
    closedir $dh;

    my $hc = $block->http_config;
    $block->set_value(http_config => (defined $hc ? $hc : '') . doc_server());
    my $c = $block->config;
    $block->set_value(config => $c . doc_steps()) if defined $c;
});

CheckoutEvents::setup();

# The port of this file's own services (free_port() never gives one twice).
$ENV{TEST_NGINX_DOC_PORT} ||= CheckoutTest::free_port();

# /_doc/doc answers with the step document it was sent (without echoing any
# header: a header with a byte over 0x7e would make its reply invalid
# UTF-8); /_doc/pay/wait600ms and /_doc/pay/wait600ms-503 are a payment
# that takes its time, long enough for a block to stop Redis meanwhile.
sub doc_server {
    return <<'_EOC_';

    server {
        listen 127.0.0.1:$TEST_NGINX_DOC_PORT;
        default_type application/json;
        client_body_buffer_size 64k;
        client_max_body_size 1m;

        location = /doc {
            echo_read_request_body;
            echo -n '{"orderId":"ord_doc","stepGot":';
            echo_request_body;
            echo '}';
        }
        location = /pay/wait600ms {
            echo_sleep 0.6;
            echo '{"status":"authorized","authorizationId":"auth_1","amount":2500}';
        }
        location = /pay/wait600ms-503 {
            echo_sleep 0.6;
            echo_status 503;
            echo '{"error":"unavailable"}';
        }
    }
_EOC_
}

sub doc_steps {
    return <<'_EOC_';

        location /_doc/ {
            internal;
            proxy_pass http://127.0.0.1:$TEST_NGINX_DOC_PORT/;
            proxy_read_timeout 60s;
            subrequest_output_buffer_size 64k;
        }
_EOC_
}

# ---- helpers --------------------------------------------------------------------

sub post {
    my (%o) = @_;
    my @h = @{ $o{headers} || [] };
    push @h, "Idempotency-Key: $o{key}" if defined $o{key};
    my $res = CheckoutTest::http_request(
        method => 'POST', uri => $o{uri} || '/checkout',
        body => defined $o{body} ? $o{body} : $Cart,
        headers => \@h, close => 1, timeout => 5);
    $res->{doc} = CheckoutTest::json_decode($res->{body} // '') || {};
    return $res;
}

# Writes the file of a worker that is gone, whole at once (written under a
# name no worker takes, then renamed); returns its name.
sub write_gone_file {
    my (@lines) = @_;
    my $dir = CheckoutEvents::spool_dir();
    my $name = "redis-0-" . CheckoutEvents::dead_pid() . ".spool";
    my $tmp = "$dir/tmp-$$.part";
    open my $out, '>', $tmp or die "$tmp: $!";
    print $out @lines;
    close $out or die "$tmp: $!";
    rename $tmp, "$dir/$name" or die "rename $tmp: $!";
    return $name;
}

# The spooled lines that name $id.
sub lines_of {
    my ($id) = @_;
    return grep { index($_, $id) >= 0 } CheckoutEvents::spool_lines();
}

# Redis is back: waits until the spool directory is empty and $id's state
# has its eventId (the replay is over).  True when it happened in time.
sub replayed {
    my ($id, $timeout) = @_;
    return CheckoutRedis::wait_for(sub {
        !CheckoutEvents::spool_files()
        && (CheckoutRedis::cmd('HGET', "checkout:$id", 'eventId') // '') eq $id
    }, $timeout || 10 * CheckoutTest::slack());
}

sub master_pid {
    open my $in, '<', $Test::Nginx::Util::PidFile or return undef;
    my ($pid) = (scalar <$in> // '') =~ /(\d+)/;
    return $pid;
}

sub spool_dump {
    return "spool dir: @{[ CheckoutEvents::spool_files() ]}";
}

# ---- TEST 1 ---------------------------------------------------------------------

# The block's checkout was spooled (Redis stopped by --- init).  Redis back,
# that file replayed; then, Redis emptied and a marker key set, a gone
# worker's file holds "[]", '["FLUSHALL"]' and the checkout's line: the two
# are not sent (the worker lives on, the marker survives), the event is
# appended once, the file is kept aside whole.
CheckoutTest::define_check(not_events => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $id = $doc->{checkoutId} // 'none';

    my @lines = lines_of($id);
    Test::More::is(scalar @lines, 1, "$name - the checkout was spooled")
        or return;

    CheckoutRedis::restart();
    Test::More::ok(replayed($id), "$name - its own spool file was replayed")
        or Test::More::diag(spool_dump());

    my $master = master_pid();
    my @workers = $master ? CheckoutEvents::children($master) : ();

    CheckoutRedis::flush();
    CheckoutRedis::cmd('SET', 'marker', 'survives');
    my $gone = write_gone_file("[]\n", "[\"FLUSHALL\"]\n", @lines);
    my @content = ("[]\n", "[\"FLUSHALL\"]\n", @lines);

    my $aside = CheckoutRedis::wait_for(sub {
        (grep { /\.rejected$/ } CheckoutEvents::spool_files())[0]
    }, 6 * CheckoutTest::slack());
    Test::More::ok($aside, "$name - the file is kept aside as *.rejected")
        or Test::More::diag(spool_dump());
    Test::More::like($aside // '', qr/^redis-0-\d+-\d+\.replay\.rejected$/,
                     "$name - named after the worker's replay file");
    Test::More::is_deeply([CheckoutEvents::spool_files()], [$aside // ''],
                          "$name - nothing else is left in the spool dir");
    if ($aside) {
        open my $in, '<', CheckoutEvents::spool_dir() . "/$aside";
        my @kept = <$in>;
        Test::More::is_deeply(\@kept, \@content,
                              "$name - it holds all three lines, as written");
    }

    Test::More::is(CheckoutRedis::cmd('GET', 'marker'), 'survives',
                   "$name - FLUSHALL was not run: the marker key survives");
    CheckoutEvents::exactly_once(
        "$name - the good line's event is in the stream exactly once",
        [$id], CheckoutEvents::counts());
    Test::More::is(CheckoutRedis::xlen('checkout:events'), 1,
                   "$name - and nothing else");
    my $state = CheckoutRedis::hgetall("checkout:$id");
    Test::More::is(($state->{status} // '') . ' ' . ($state->{eventId} // ''),
                   "confirmed $id", "$name - its state is written");

    my @said = grep { /a line is not an event/ } CheckoutEvents::error_log_lines();
    Test::More::is(scalar @said, 2,
                   "$name - the log says 'a line is not an event' twice")
        or Test::More::diag(@said);

    SKIP: {
        Test::More::skip("$name - no worker processes (master off)", 2)
            unless @workers;
        Test::More::ok(kill(0, $master), "$name - the master is running");
        Test::More::is_deeply([CheckoutEvents::children($master)], \@workers,
                              "$name - the same worker runs: none died");
    }
});

# ---- TEST 2 ---------------------------------------------------------------------

# The block's checkout (Y) was spooled; Redis back, the file replayed: the
# replay round has just run, the next one is a second away.  Within that
# second: the stream made a plain string, a checkout (X) whose script fails
# on XADD (WRONGTYPE): it answers 201 and is spooled, and it left no state
# (no eventId guard) behind; the string deleted.  The next round appends
# X's event, once, and writes its state with the guard.
CheckoutTest::define_check(half_way => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $y = $doc->{checkoutId} // 'none';

    CheckoutRedis::restart();
    # polled every 5 ms: the moment of the replay round matters
    my $synced = CheckoutProc::wait_for(sub {
        !CheckoutEvents::spool_files() && CheckoutEvents::counts()->{$y}
            ? time : 0;
    }, 10 * CheckoutTest::slack(), 0.005);
    Test::More::ok($synced, "$name - the first checkout was replayed")
        or return Test::More::diag(spool_dump());

    CheckoutRedis::cmd('SET', 'checkout:events', 'x');
    my $r = post(body => '{"customerId":"cus_2"}');
    my $x = $r->{doc}{checkoutId} // 'none';
    Test::More::is($r->{status}, 201, "$name - the checkout answers 201")
        or Test::More::diag($r->{error} // $r->{body});
    Test::More::is($r->{doc}{status}, 'confirmed', "$name - confirmed");
    Test::More::ok(($r->{elapsed} // 9) < $Margin,
                   "$name - at once (${\ ($r->{elapsed} // 'none')} s)");
    my $left = CheckoutRedis::cmd('EXISTS', "checkout:$x");
    Test::More::is(scalar(lines_of($x)), 1, "$name - its event is in the spool");
    CheckoutRedis::cmd('DEL', 'checkout:events');
    my $since = time - $synced;
    Test::More::is($left, 0,
                   "$name - the failed script left no state, no eventId guard");
    Test::More::diag("$name - the stream was a string for ${since}s after the "
                     . "replay round: the next round may have seen it")
        if $since > 0.9;

    my $counts = CheckoutEvents::wait_for_events([$x], 5 * CheckoutTest::slack());
    Test::More::ok(CheckoutRedis::wait_for(sub { !CheckoutEvents::spool_files() }, 5),
                   "$name - the spool file is gone") or Test::More::diag(spool_dump());
    CheckoutEvents::exactly_once("$name - the replay appended the event exactly once",
                                 [$x], CheckoutEvents::counts());
    my $state = CheckoutRedis::hgetall("checkout:$x");
    Test::More::is($state->{eventId}, $x, "$name - the state has its eventId");
    Test::More::is($state->{status}, 'confirmed', "$name - and its status");
});

# ---- TEST 3 ---------------------------------------------------------------------

# Redis at its memory limit (--- init): the block's checkout was answered
# and spooled.  Its replay is refused with OOM, said at warn level, and the
# file stays to be replayed (no *.rejected); once the limit is lifted, the
# event arrives once and the spool is empty.
CheckoutTest::define_check(oom => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $id = $doc->{checkoutId} // 'none';

    Test::More::is(scalar(lines_of($id)), 1, "$name - the checkout's event was spooled");
    my $refused = CheckoutRedis::wait_for(sub {
        grep { /\[warn\].*checkout spool ".*": redis refused an event: OOM / }
             CheckoutEvents::error_log_lines();
    }, 5 * CheckoutTest::slack());
    Test::More::ok($refused, "$name - the replay was refused with OOM, at warn level");
    sleep 1.2 * CheckoutTest::slack();    # one more round
    my @files = CheckoutEvents::spool_files();
    Test::More::is(scalar(grep { /\.rejected$/ } @files), 0,
                   "$name - the file is not set aside") or Test::More::diag("@files");
    Test::More::is(scalar(lines_of($id)), 1, "$name - the event is still in the spool")
        or Test::More::diag("@files");
    Test::More::is(CheckoutRedis::cmd('EXISTS', 'checkout:events'), 0,
                   "$name - nothing reached the stream meanwhile");

    CheckoutRedis::cmd('CONFIG', 'SET', 'maxmemory', '0');
    Test::More::ok(replayed($id, 5 * CheckoutTest::slack()),
                   "$name - the limit lifted, the event is replayed and the spool is empty")
        or Test::More::diag(spool_dump());
    CheckoutEvents::exactly_once("$name - the event is in the stream exactly once",
                                 [$id], CheckoutEvents::counts());
});

# ---- TEST 4 ---------------------------------------------------------------------

my @B62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');

# The block's checkout (X0) was spooled.  From its line, 500 lines of
# other checkouts, the id replaced everywhere it occurs, in a gone worker's
# file; Redis started: while the file is replayed, checkouts keep coming
# and each answers 201 at once; all 500 events arrive, once each, within
# 15 s.
CheckoutTest::define_check(large_spool => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $x0 = $doc->{checkoutId} // 'none';

    my @l = lines_of($x0);
    Test::More::is(scalar @l, 1, "$name - the checkout was spooled") or return;
    my $line = $l[0];
    my $cmd = CheckoutTest::json_decode($line) || [];
    my %f = @$cmd[19 .. $#$cmd];
    my $data = CheckoutTest::json_decode($f{data} // '') || {};
    Test::More::is(join(' ', $cmd->[4] // '', $cmd->[6] // '', $f{ce_id} // '',
                        $f{ce_subject} // '', $data->{checkoutId} // ''),
                   "checkout:$x0 $x0 $x0 $x0 $x0",
                   "$name - the line names its checkout in the state key, the "
                   . "event id, ce_id, ce_subject and data.checkoutId");

    my (%seen, @ids);
    while (@ids < 500) {
        my $id = 'chk_' . join '', map { $B62[int rand 62] } 1 .. 22;
        push @ids, $id unless $seen{$id}++ || $id eq $x0;
    }
    my @lines = map { (my $c = $line) =~ s/\Q$x0\E/$_/g; $c } @ids;
    Test::More::ok(!grep({ index($_, $x0) >= 0 } @lines),
                   "$name - 500 lines made, the old id nowhere in them");
    my $gone = write_gone_file(@lines);

    my $t0 = time;
    CheckoutRedis::restart();
    my (@live, $during, $done);
    while (time - $t0 < 15 * CheckoutTest::slack()) {
        my @before = CheckoutEvents::spool_files();
        my $r = post(body => '{"customerId":"cus_live"}');
        push @live, $r;
        my @after = CheckoutEvents::spool_files();
        # the gone worker's file is being replayed (renamed to a .replay)
        $during++ if grep { /\.replay$/ } @before, @after;
        if (!@after && CheckoutRedis::xlen('checkout:events') >= 501) {
            $done = time - $t0;
            last;
        }
        sleep 0.005;
    }
    Test::More::ok($done, "$name - the spool was replayed within 15 s"
                          . ($done ? sprintf(' (%.2f s)', $done) : ''))
        or Test::More::diag(spool_dump());
    Test::More::note("$name - " . @live . " live checkouts, "
                     . ($during // 0) . " of them while a file was replayed");
    Test::More::ok($during, "$name - live checkouts were sent during the replay");

    my @bad = grep { ($_->{status} // 0) != 201 } @live;
    Test::More::is(scalar @bad, 0, "$name - every live checkout answered 201")
        or Test::More::diag(join "\n", map { $_->{error} // "$_->{status} $_->{body}" }
                            @bad[0 .. ($#bad > 4 ? 4 : $#bad)]);
    my ($slowest) = sort { $b <=> $a } map { $_->{elapsed} // 99 } @live;
    Test::More::ok(defined $slowest && $slowest < $Margin,
                   "$name - each within ${Margin}s (the slowest: "
                   . sprintf('%.3f', $slowest // 99) . ' s)');

    my @live_ids = grep { $_ } map { $_->{doc}{checkoutId} } @live;
    my $counts = CheckoutEvents::wait_for_events([@ids, $x0, @live_ids], 5);
    CheckoutEvents::exactly_once("$name - each of the 500 events is in the stream exactly once",
                                 \@ids, $counts);
    CheckoutEvents::exactly_once("$name - and the block's checkout", [$x0], $counts);
    CheckoutEvents::exactly_once("$name - and each live checkout", \@live_ids, $counts);
    Test::More::is(CheckoutRedis::xlen('checkout:events'), 501 + @live_ids,
                   "$name - nothing else is in the stream");
});

# ---- TEST 5 ---------------------------------------------------------------------

# A keyed checkout on $uri whose steps Redis leaves: its gate took the key,
# then Redis is stopped while the payment step runs, so its event, state and
# idempotency record go to the spool.  Returns (checkout id, the spooled
# line, the command's arguments).
sub keyed_checkout_redis_gone {
    my ($name, $uri, $key, $status) = @_;
    my $rkey = "checkout:idem:$uri:$key";

    my $sock = CheckoutTest::http_connect();
    my $req = CheckoutTest::build_request(method => 'POST', uri => $uri,
        body => $Cart, close => 1, headers => ["Idempotency-Key: $key"]);
    syswrite($sock, $req) == length $req or Test::More::fail("$name - send: $!");
    my $rec = {};
    CheckoutRedis::wait_for(sub {
        $rec = CheckoutRedis::hgetall($rkey);
        ($rec->{state} // '') eq 'running';
    }, 2 * CheckoutTest::slack());
    CheckoutRedis::stop();    # while the payment step runs

    my $r = CheckoutTest::http_send_recv($sock, '', 5);
    close $sock;
    my $d = CheckoutTest::json_decode($r->{body} // '') || {};
    my $id = $d->{checkoutId} // 'none';
    Test::More::is($r->{status}, $status, "$name - $uri answers $status")
        or Test::More::diag($r->{error} // $r->{body});
    Test::More::is($rec->{checkoutId}, $id,
                   "$name - its gate's record $rkey names it, running");

    my @lines = lines_of($id);
    Test::More::is(scalar @lines, 1, "$name - its command went to the spool");
    my $cmd = CheckoutTest::json_decode($lines[0] // '') || [];
    Test::More::is($cmd->[5], $rkey, "$name - with the key's record");
    Test::More::like($cmd->[18] // '', qr/^[0-9a-f]{40}$/,
                     "$name - and the request's fingerprint");
    return ($id, $lines[0] // '', $cmd);
}

# Replays $line from a gone worker's file into Redis as it is now; true
# once the file is gone and $id's state is written.
sub replay_line {
    my ($id, $line) = @_;
    write_gone_file($line);
    return replayed($id, 6 * CheckoutTest::slack());
}

CheckoutTest::define_check(record_ownership => sub {
    my ($block) = @_;
    my $name = $block->name;

    # A: a confirmed checkout's record, replayed while a newer checkout
    # runs with the key
    my ($old, $line, $cmd) =
        keyed_checkout_redis_gone("$name - A", '/checkout', 'own-1', 201);
    my $rkey = $cmd->[5] // 'none';
    my $fp = $cmd->[18] // '';

    CheckoutRedis::restart();
    Test::More::ok(replayed($old), "$name - A: the spool is replayed once Redis is back")
        or Test::More::diag(spool_dump());
    my $rec = CheckoutRedis::hgetall($rkey);
    Test::More::is(join(' ', map { $rec->{$_} // '-' } qw(checkoutId state status)),
                   "$old done 201",
                   "$name - A: with no one holding the key, the replay stores its reply");

    # the event never reached Redis, and the key went to a newer checkout
    my $newer = 'chk_' . ('N' x 22);
    my %newer = (checkoutId => $newer, state => 'running', fingerprint => $fp);
    CheckoutRedis::flush();
    CheckoutRedis::cmd('HSET', $rkey, %newer);
    CheckoutRedis::cmd('PEXPIRE', $rkey, 60000);
    Test::More::ok(replay_line($old, $line),
                   "$name - A: the late record is replayed")
        or Test::More::diag(spool_dump());
    Test::More::is_deeply(CheckoutRedis::hgetall($rkey), \%newer,
                          "$name - A: the newer checkout's record is untouched");
    Test::More::cmp_ok(CheckoutRedis::cmd('PTTL', $rkey), '>', 50000,
                       "$name - A: and keeps its expiry");
    CheckoutEvents::exactly_once("$name - A: the old checkout's event is in the stream once",
                                 [$old], CheckoutEvents::counts());

    # B: a failed checkout's record (it releases its key), replayed after a
    # newer checkout with the key finished
    my ($old2, $line2, $cmd2) =
        keyed_checkout_redis_gone("$name - B", '/checkout-fail', 'own-2', 503);
    my $rkey2 = $cmd2->[5] // 'none';
    Test::More::is(scalar(@$cmd2) . " '" . ($cmd2->[13] // '') . "'", "19 ''",
                   "$name - B: no event, and a release of the key");

    CheckoutRedis::restart();
    Test::More::ok(replayed($old2), "$name - B: the spool is replayed once Redis is back")
        or Test::More::diag(spool_dump());

    # still its own record: the replay releases it
    CheckoutRedis::flush();
    CheckoutRedis::cmd('HSET', $rkey2, checkoutId => $old2, state => 'running',
                       fingerprint => $cmd2->[18] // '');
    Test::More::ok(replay_line($old2, $line2), "$name - B: replayed again");
    Test::More::is(CheckoutRedis::cmd('EXISTS', $rkey2), 0,
                   "$name - B: while the record is its own, the replay releases the key");

    my $newer2 = 'chk_' . ('M' x 22);
    my %done = (checkoutId => $newer2, state => 'done', status => '201',
                body => qq({"status":"confirmed","checkoutId":"$newer2"}),
                location => "/checkout-fail/$newer2", retryAfter => '',
                fingerprint => $cmd2->[18] // '');
    CheckoutRedis::flush();
    CheckoutRedis::cmd('HSET', $rkey2, %done);
    CheckoutRedis::cmd('PEXPIRE', $rkey2, 60000);
    Test::More::ok(replay_line($old2, $line2), "$name - B: the late record is replayed");
    Test::More::is_deeply(CheckoutRedis::hgetall($rkey2), \%done,
                          "$name - B: the newer checkout's record is neither deleted nor changed");
    Test::More::cmp_ok(CheckoutRedis::cmd('PTTL', $rkey2), '>', 50000,
                       "$name - B: and keeps its expiry");

    # what a client sees: the retry with the newer checkout's key replays
    # the newer reply
    my $retry = post(uri => '/checkout-fail', key => 'own-2');
    Test::More::is(($retry->{status} // '') . ' ' . ($retry->{doc}{checkoutId} // ''),
                   "201 $newer2", "$name - B: a retry with the key gets the newer reply")
        or Test::More::diag($retry->{error} // $retry->{body});
});

# ---- TEST 6 ---------------------------------------------------------------------

CheckoutTest::define_check(non_ascii_key => sub {
    my ($block) = @_;
    my $name = $block->name;
    Test::More::is(CheckoutRedis::cmd('DBSIZE'), 0, "$name - no key was taken in Redis");

    my $q = post(headers => ["Idempotency-Key: \"k\xff-1\""]);
    Test::More::is(($q->{status} // '') . ' ' . ($q->{doc}{error} // ''),
                   '400 invalid_idempotency_key', "$name - the sf-string form too")
        or Test::More::diag($q->{error} // $q->{body});
    Test::More::ok(!exists $q->{doc}{checkoutId}, "$name - no checkout started");

    my $off = post(uri => '/checkout-off', key => "k\xff-1");
    Test::More::is(($off->{status} // '') . ' ' . ($off->{doc}{status} // ''),
                   '201 confirmed', "$name - checkout_idempotency off: the checkout runs")
        or Test::More::diag($off->{error} // $off->{body});
    my $got = $off->{doc}{stepGot} || {};
    Test::More::ok(exists $got->{idempotencyKey} && !defined $got->{idempotencyKey},
                   "$name - the create step's document has idempotencyKey null");
    my $v = (($got->{results} || {})->{validate} || {})->{stepGot} || {};
    Test::More::ok(exists $v->{idempotencyKey} && !defined $v->{idempotencyKey},
                   "$name - the validate step's document too");

    my $ok = post(uri => '/checkout-off', key => 'ok-1');
    Test::More::is($ok->{doc}{stepGot}{idempotencyKey}, 'ok-1',
                   "$name - (a printable key there is passed to the steps)");
});

# ---- TEST 7 ---------------------------------------------------------------------

CheckoutTest::define_check(relative_spool => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $id = $doc->{checkoutId} // 'none';
    my $dir = rel_spool_dir();

    opendir(my $dh, $dir) or die "$dir: $!";
    my @files = sort grep { !/^\.\.?$/ } readdir $dh;
    closedir $dh;
    Test::More::ok(@files == 1 && $files[0] =~ /^redis-0-\d+\.spool$/,
                   "$name - the spool file is in <prefix>/$RelSpool")
        or Test::More::diag("$dir: @files");
    my $content = '';
    if (@files && open my $in, '<', "$dir/$files[0]") {
        local $/;
        $content = <$in>;
    }
    Test::More::ok(index($content, $id) >= 0, "$name - holding the checkout's event");
    Test::More::is(scalar(CheckoutEvents::spool_files()), 0,
                   "$name - nothing in the other spool directory");
    Test::More::ok(!-e server_root() . "/conf/$RelSpool" && !-e $RelSpool,
                   "$name - nor relative to the conf dir or the working "
                   . "directory");

    CheckoutRedis::restart();
    my $counts = CheckoutEvents::wait_for_events([$id], 10 * CheckoutTest::slack());
    CheckoutEvents::exactly_once("$name - Redis back, the event is replayed from there, once",
                                 [$id], $counts);
    my $empty = CheckoutRedis::wait_for(sub {
        opendir my $d, $dir or return 0;
        my @left = grep { !/^\.\.?$/ } readdir $d;
        !@left;
    }, 5);
    Test::More::ok($empty, "$name - and <prefix>/$RelSpool is empty again");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a gone worker's spool file with "[]", '["FLUSHALL"]' and an event: no worker dies, FLUSHALL never runs, the event lands once, the file is kept aside
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
--- timeout: 3
--- error_code: 201
--- checkout_check: not_events
--- error_log eval
[qr/\[alert\].*checkout spool ".*\.replay": a line is not an event: "\[\]"/,
 qr/\[alert\].*checkout spool ".*\.replay": a line is not an event: "\["FLUSHALL"\]"/,
 qr/\[alert\].*checkout spool: 2 events cannot be replayed, kept in ".*\.replay\.rejected"/]
--- no_error_log
[crit]
exited on signal
refused an event



=== TEST 2: an event script that failed half-way (WRONGTYPE) is spooled with no guard left; once the stream is fixed the replay appends it, once
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
--- timeout: 3
--- error_code: 201
--- checkout_check: half_way
--- error_log eval
[qr/\[error\].*checkout chk_[A-Za-z0-9]{22}: redis \S+: WRONGTYPE /,
 qr/\[warn\].*event spooled/]
--- no_error_log
[alert]
[crit]
refused an event
cannot be replayed



=== TEST 3: Redis answers OOM: the replay is refused at warn level and retried, the file is not set aside; the limit lifted, the event lands once
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
CheckoutRedis::cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
CheckoutRedis::cmd('CONFIG', 'SET', 'maxmemory', '1');
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_json
status: "confirmed"
--- checkout_check: oom
--- error_log eval
[qr/\[error\].*checkout chk_[A-Za-z0-9]{22}: redis \S+: OOM /,
 qr/\[warn\].*checkout spool ".*": redis refused an event: OOM /,
 qr/\[warn\].*checkout spool ".*": 1 events not replayed, retrying/,
 qr/checkout spool ".*" replayed/]
--- no_error_log
[alert]
[crit]
cannot be replayed



=== TEST 4: a gone worker's file of 500 events replays in batches: all 500 once within 15 s, live checkouts meanwhile answer 201 at once
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
--- timeout: 3
--- error_code: 201
--- checkout_check: large_spool
--- error_log eval
qr/checkout spool ".*" replayed/
--- no_error_log
[alert]
[crit]
refused an event
not replayed



=== TEST 5: a late spooled idempotency record leaves the key of a newer checkout alone (neither overwritten nor deleted)
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    checkout_idempotency optional;

    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_doc/pay/wait600ms;
        checkout_step create    /_svc/orders/ok;
    }
    location = /checkout-fail {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_doc/pay/wait600ms-503;
        checkout_step create    /_svc/orders/ok;
    }
--- request
GET /checkout
--- error_code: 405
--- checkout_check: record_ownership
--- no_error_log
[alert]
[crit]
refused an event



=== TEST 6: an Idempotency-Key with a byte over 0x7e: 400 invalid_idempotency_key where keys are honoured; with checkout_idempotency off the checkout runs and the steps get null
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate /_trap/validate;
        checkout_step create   /_trap/create;
    }
    location = /checkout-off {
        checkout;
        checkout_idempotency off;
        checkout_step validate /_doc/doc;
        checkout_step create   /_doc/doc;
    }
--- more_headers eval
"Content-Type: application/json\nIdempotency-Key: k\xff-1"
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 400
--- checkout_json
status: "invalid_request"
error: "invalid_idempotency_key"
message is string
checkoutId !
--- checkout_check: non_ascii_key
--- no_error_log
step-was-called
[alert]
[crit]



=== TEST 7: a relative checkout_spool is resolved against nginx's prefix: the spool file appears in <servroot>/../<servroot name>.spool-rel, and is replayed from there
--- http_config
    checkout_spool $TEST_NGINX_REL_SPOOL;
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
--- timeout: 3
--- error_code: 201
--- checkout_check: relative_spool
--- error_log eval
[qr/\[warn\].*event spooled/,
 qr/checkout spool ".*\.spool-rel\/redis-0-\d+-\d+\.replay" replayed/]
--- no_error_log
is not writable
[alert]
[crit]



=== TEST 8: an unwritable spool directory is said at start, before any event needs it
--- http_config
    checkout_spool $TEST_NGINX_UNWRITABLE_SPOOL;
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
--- error_log eval
qr/\[alert\].*checkout spool directory "\Q$ENV{TEST_NGINX_UNWRITABLE_SPOOL}\E" is not writable/
--- no_error_log
[crit]
event spooled
