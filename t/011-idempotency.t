# Idempotency (README "Idempotency", `checkout_idempotency`): a checkout
# with an Idempotency-Key runs once; a retry with the same key and body gets
# the stored reply byte for byte with `Idempotent-Replayed: true` and calls
# no step; another body is 422, a running key 409; the key's two forms (the
# draft's sf-string and Stripe's bare form), its limits, its scope (the
# location), what releases it (`failed`) and what keeps it (every other
# outcome), `ttl=`, Redis down or slow, and the directive's errors.
#
# The services a block's steps call are counted: the steps go to
# /_cnt/PATH (or /_pay, which picks the payment answer from the client's
# X-Pay header), a server of this file (below) that logs every call it
# serves, as "URI KEY", to logs/calls.log in the block's server root.
#
# Each test file has its own redis-server (t/lib/CheckoutRedis.pm); before
# every block it is started again if a block stopped it, resumed if a block
# paused it, and emptied (FLUSHALL), and the spool directory is emptied.
# The server keeps an append-only file, so a block that stops and restarts
# it finds its data again, as a production Redis would.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use CheckoutProc ();
use CheckoutRedis ();
use File::Path ();
use File::Temp qw(tempdir);
use Test::More ();
use Time::HiRes qw(sleep time);

worker_connections(1024);

CheckoutRedis::start(args => ['--appendonly', 'yes', '--appendfsync', 'no']);

our $SpoolDir = tempdir('checkout-idem-spool-XXXXXXXX', DIR => '/tmp',
                        CLEANUP => 1);
$ENV{TEST_NGINX_SPOOL_DIR} = $SpoolDir;

CheckoutTest::use_mock_services();

# The counted services' port (free_port() never gives one twice).
$ENV{TEST_NGINX_IDEM_PORT} ||= CheckoutTest::free_port();

our $Cart = '{"customerId":"cus_1","currency":"EUR",'
          . '"items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],'
          . '"payment":{"method":"card","token":"tok_visa"}}';

my $ID = CheckoutTest::id_re();

# ---- the counted services -----------------------------------------------------

my $CountedServices = <<'_EOC_';
    log_format idem_calls '$uri $http_idempotency_key';

    server {
        listen 127.0.0.1:$TEST_NGINX_IDEM_PORT;
        default_type application/json;
        client_body_buffer_size 64k;
        client_max_body_size 1m;
        access_log logs/calls.log idem_calls;

        location = /cart/ok {
            echo '{"total":2500,"currency":"EUR"}';
        }
        location = /pay/ok {
            echo '{"status":"authorized","authorizationId":"auth_1","amount":2500}';
        }
        location = /pay/wait300ms {
            echo_sleep 0.3;
            echo '{"status":"authorized","authorizationId":"auth_1","amount":2500}';
        }
        location = /pay/wait600ms {
            echo_sleep 0.6;
            echo '{"status":"authorized","authorizationId":"auth_1","amount":2500}';
        }
        location = /pay/503 {
            echo_status 503;
            echo '{"error":"unavailable"}';
        }
        location = /pay/decline {
            echo_status 402;
            echo '{"reason":"card_declined","message":"Your card was declined."}';
        }
        location = /pay/3ds {
            echo '{"status":"requires_action","action":{"type":"redirect_to_url","url":"https://bank.example/3ds?session=s_1"}}';
        }
        # every order has its own id: a second run shows
        location = /orders/ok {
            echo_status 201;
            echo '{"orderId":"ord_$request_id","total":2500,"currency":"EUR"}';
        }
        # answers with the step document it was sent
        location = /echo {
            echo_read_request_body;
            echo -n '{"orderId":"ord_echo","stepGot":';
            echo_request_body;
            echo '}';
        }
    }
_EOC_

my $CountedSteps = <<'_EOC_';

        location /_cnt/ {
            internal;
            proxy_pass http://127.0.0.1:$TEST_NGINX_IDEM_PORT/;
            proxy_read_timeout 60s;
            subrequest_output_buffer_size 64k;
        }
        # the payment answer the client's X-Pay header names (ok, 503, ...)
        location = /_pay {
            internal;
            proxy_pass http://127.0.0.1:$TEST_NGINX_IDEM_PORT/pay/$http_x_pay;
            proxy_read_timeout 60s;
            subrequest_output_buffer_size 64k;
        }
_EOC_

add_block_preprocessor(sub {
    my ($block) = @_;

    # Redis running, answering and empty; the spool empty.
    if (!CheckoutRedis::pid()) {
        CheckoutRedis::restart();
    } else {
        CheckoutRedis::resume();
    }
    CheckoutRedis::flush();
    unlink spool_files();
    CheckoutRedis::stop() if defined scalar $block->redis_stopped;

    my $hc = $block->http_config;
    $block->set_value(http_config => (defined $hc ? $hc : '') . $CountedServices);
    my $c = $block->config;
    $block->set_value(config => $c . $CountedSteps) if defined $c;
});

# ---- helpers ------------------------------------------------------------------

# POST $Cart (or body =>) to /checkout (or uri =>) on a new connection, with
# the key (key =>) and more headers (headers => [...]).
sub post {
    my (%o) = @_;
    my @h = @{ $o{headers} || [] };
    push @h, "Idempotency-Key: $o{key}" if defined $o{key};
    push @h, "X-Pay: $o{pay}" if defined $o{pay};
    my $res = CheckoutTest::http_request(
        method => 'POST', uri => $o{uri} || '/checkout',
        body => defined $o{body} ? $o{body} : $Cart,
        headers => \@h, close => 1, timeout => 5);
    $res->{doc} = CheckoutTest::json_decode($res->{body} // '') || {};
    return $res;
}

sub calls_file { server_root() . '/logs/calls.log' }

# The service calls so far ("URI KEY" lines), those matching $re.
sub calls {
    my ($re) = @_;
    open my $in, '<', calls_file() or return ();
    my @l = <$in>;
    close $in;
    chomp @l;
    return defined $re ? grep { /$re/ } @l : @l;
}

# How many calls match $re, once a step that wrongly ran would have logged.
sub ncalls {
    my ($re) = @_;
    sleep 0.1 * CheckoutTest::slack();
    return scalar(calls($re));
}

# What the module keeps in Redis for idempotency keys: every key that is
# neither the event stream nor a checkout's state hash.
sub idem_records {
    my $keys = CheckoutRedis::cmd('KEYS', '*');
    my @k = sort grep { $_ ne 'checkout:events' && $_ !~ /^checkout:chk_/ }
                 @$keys;
    return @k;
}

sub state_hashes {
    return scalar grep { /^checkout:chk_/ } @{ CheckoutRedis::cmd('KEYS', '*') };
}

sub xlen { CheckoutRedis::cmd('XLEN', 'checkout:events') }

sub spool_files {
    opendir my $dh, $SpoolDir or return ();
    my @f = map { "$SpoolDir/$_" } sort grep { !/^\.\.?$/ } readdir $dh;
    closedir $dh;
    return @f;
}

sub spool_lines {
    my @lines;
    for my $f (spool_files()) {
        open my $in, '<', $f or next;
        push @lines, grep { /\S/ } <$in>;
    }
    return @lines;
}

sub hdr {
    my ($res, $name) = @_;
    return $res->{headers} ? $res->{headers}{lc $name} : undef;
}

# $r is the checkout that ran: its own reply, not a replay.
sub is_original {
    my ($name, $r, $status, $what) = @_;
    Test::More::is($r->{status}, $status, "$name - $what: $status")
        or Test::More::diag($r->{error} // $r->{body});
    Test::More::ok(!defined hdr($r, 'Idempotent-Replayed'),
                   "$name - $what: no Idempotent-Replayed");
    Test::More::like($r->{doc}{checkoutId} // '', $ID,
                     "$name - $what: a checkoutId");
}

# $b is the replay of $a: same status, body (bytes), Location, Retry-After,
# Content-Type, Cache-Control, plus Idempotent-Replayed: true.
sub is_replay_of {
    my ($name, $b, $a, $what) = @_;
    Test::More::is($b->{status}, $a->{status}, "$name - $what: same status")
        or Test::More::diag($b->{error} // $b->{body});
    Test::More::ok(defined $b->{body} && defined $a->{body}
                   && $b->{body} eq $a->{body},
                   "$name - $what: the same body, byte for byte")
        or Test::More::diag("first:  " . ($a->{body} // '<none>')
                            . "\nreplay: " . ($b->{body} // '<none>'));
    for my $h (qw(Location Retry-After Content-Type Cache-Control)) {
        Test::More::is(hdr($b, $h), hdr($a, $h), "$name - $what: same $h");
    }
    Test::More::is(hdr($b, 'Idempotent-Replayed'), 'true',
                   "$name - $what: Idempotent-Replayed: true");
}

# A refusal: status, error, and no checkout.
sub is_refusal {
    my ($name, $r, $status, $error, $what) = @_;
    Test::More::is($r->{status}, $status, "$name - $what: $status")
        or Test::More::diag($r->{error} // $r->{body});
    Test::More::is($r->{doc}{error}, $error, "$name - $what: error $error");
    Test::More::ok(!exists $r->{doc}{checkoutId},
                   "$name - $what: no checkoutId");
    Test::More::ok(!defined hdr($r, 'Idempotent-Replayed'),
                   "$name - $what: no Idempotent-Replayed");
}

# The block's own reply as a post() result, for is_replay_of(); its
# headers are checked by the block's sections, and Location and
# Content-Type/Cache-Control are the ones a replay must repeat.
sub first_reply {
    my ($body, $doc, $status, %h) = @_;
    return { status => $status, body => $body, doc => $doc || {},
             headers => { 'content-type' => 'application/json',
                          'cache-control' => 'no-store',
                          map { lc($_) => $h{$_} } keys %h } };
}

# ---- checks -------------------------------------------------------------------

# TEST 1
CheckoutTest::define_check(replayed_once => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $id = $doc->{checkoutId} // '';

    my @first = calls();
    Test::More::is_deeply(\@first, ['/cart/ok order-7f3a', '/pay/ok order-7f3a',
                                    '/orders/ok order-7f3a'],
                          "$name - the first request called each service once");
    Test::More::is(xlen(), 1, "$name - one event");
    my @rec = idem_records();
    Test::More::is(scalar(@rec), 1, "$name - one idempotency record in Redis");
    my $pttl = @rec ? CheckoutRedis::cmd('PTTL', $rec[0]) : -2;
    Test::More::ok($pttl > 86_400_000 - 10_000 && $pttl <= 86_400_000,
                   "$name - kept for the default ttl, 24h")
        or Test::More::diag("PTTL: $pttl");

    my $first = first_reply($body, $doc, 201, Location => "/checkout/$id");
    my $r2 = post(key => 'order-7f3a');
    is_replay_of($name, $r2, $first, 'retry');
    my $r3 = post(key => 'order-7f3a');
    is_replay_of($name, $r3, $first, 'second retry');
    Test::More::is(ncalls(), 3, "$name - the retries called no service");
    Test::More::is(xlen(), 1, "$name - the retries appended no event");
    Test::More::is(state_hashes(), 1, "$name - and made no checkout state");

    # Both replies of one key seen by the client, compared whole.
    my $a = post(key => 'order-8b21');
    is_original($name, $a, 201, 'another key');
    Test::More::isnt($a->{doc}{checkoutId}, $id, "$name - another key: another checkout");
    Test::More::is(hdr($a, 'Location'), "/checkout/" . ($a->{doc}{checkoutId} // ''),
                   "$name - another key: Location names its checkout");
    my $b = post(key => 'order-8b21');
    is_replay_of($name, $b, $a, "another key's retry");
    Test::More::is(ncalls(qr{^/pay/}), 2, "$name - the payment service was called twice in all");
});

# TEST 2
CheckoutTest::define_check(other_body => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    (my $spaced = $Cart) =~ s/,/, /;
    my @cases = (
        ['another cart', '{"customerId":"cus_1","currency":"EUR","items":[{"sku":"book-1","quantity":3,"unitPrice":1250}]}'],
        ['the same JSON with one more space', $spaced],
    );
    for my $c (@cases) {
        my $r = post(key => 'reuse-1', body => $c->[1]);
        is_refusal($name, $r, 422, 'idempotency_key_reused', $c->[0]);
    }
    Test::More::is(ncalls(), 3, "$name - the refused requests called no service");
    Test::More::is(xlen(), 1, "$name - one event in all");
    my $again = post(key => 'reuse-1');
    is_replay_of($name, $again,
                 first_reply($body, $doc, 201,
                             Location => "/checkout/" . ($doc->{checkoutId} // '')),
                 'the first body again');
});

# TEST 3
CheckoutTest::define_check(bad_input_keeps_key_free => sub {
    my ($block) = @_;
    my $name = $block->name;
    Test::More::is(ncalls(), 0, "$name - bad input called no service");
    Test::More::is(CheckoutRedis::cmd('DBSIZE'), 0, "$name - and left nothing in Redis");
    my $r = post(key => 'bad-input-1');
    is_original($name, $r, 201, 'the same key with a good body');
    is_replay_of($name, post(key => 'bad-input-1'), $r, 'and its retry');
});

# TEST 4
CheckoutTest::define_check(in_use => sub {
    my ($block) = @_;
    my $name = $block->name;

    my $sock = CheckoutTest::http_connect();
    my $req = CheckoutTest::build_request(method => 'POST', uri => '/checkout',
        body => $Cart, close => 1,
        headers => ['Idempotency-Key: busy-1', 'X-Pay: wait600ms']);
    syswrite($sock, $req) == length $req or Test::More::fail("$name - send: $!");
    CheckoutRedis::wait_for(sub { scalar idem_records() },
                            2 * CheckoutTest::slack());

    my $t0 = time;
    my $r2 = post(key => 'busy-1', pay => 'ok');
    is_refusal($name, $r2, 409, 'idempotency_key_in_use', 'while the first runs');
    Test::More::is(hdr($r2, 'Retry-After'), '1', "$name - 409: Retry-After: 1");
    Test::More::cmp_ok(time - $t0, '<', 0.4 * CheckoutTest::slack(), "$name - 409 at once, not after the first");

    # checkout_timeout 3s: the key is held for 3 s + 30 s
    my $hold = (3 * CheckoutTest::slack() + 30) * 1000;
    my @rec = idem_records();
    my $pttl = @rec ? CheckoutRedis::cmd('PTTL', $rec[0]) : -2;
    Test::More::ok($pttl > $hold - 2000 && $pttl <= $hold,
                   "$name - a running checkout holds its key for its budget plus 30 s")
        or Test::More::diag("PTTL: $pttl");

    my $r1 = CheckoutTest::http_send_recv($sock, '', 5);
    close $sock;
    $r1->{doc} = CheckoutTest::json_decode($r1->{body} // '') || {};
    is_original($name, $r1, 201, 'the first');
    Test::More::is($r1->{doc}{status}, 'confirmed', "$name - the first is confirmed");

    my $r3 = post(key => 'busy-1', pay => 'ok');
    is_replay_of($name, $r3, $r1, 'retry once it finished');
    Test::More::is(ncalls(qr{^/pay/\S+ busy-1$}), 1,
                   "$name - the payment service was called once with the key");
});

# TEST 5
CheckoutTest::define_check(burst_one_key => sub {
    my ($block) = @_;
    my $name = $block->name;
    my @res = CheckoutTest::run_clients(
        conns => 50, requests => 1, timeout => 10,
        make => sub { (uri => '/checkout', body => $Cart,
                       headers => ['Idempotency-Key: burst-1', 'X-Pay: wait300ms']) });
    Test::More::is(scalar(@res), 50, "$name - 50 replies");
    Test::More::is(scalar(grep { $_->{error} } @res), 0, "$name - no client error")
        or Test::More::diag(Test::More::explain([grep { $_->{error} } @res]));

    my (@created, @busy, @other);
    for my $r (@res) {
        $r->{doc} = CheckoutTest::json_decode($r->{body} // '') || {};
        my $s = $r->{status} // 0;
        if ($s == 201) {
            push @created, $r;
        } elsif ($s == 409 && ($r->{doc}{error} // '') eq 'idempotency_key_in_use'
                 && (hdr($r, 'Retry-After') // '') eq '1') {
            push @busy, $r;
        } else {
            push @other, $r;
        }
    }
    Test::More::is(scalar(@other), 0,
                   "$name - every reply is the checkout's 201 or a 409 with Retry-After: 1")
        or Test::More::diag(Test::More::explain([map { { status => $_->{status},
            body => $_->{body}, error => $_->{error} } } @other[0 .. ($#other > 4 ? 4 : $#other)]]));
    Test::More::note(sprintf "%d x 201 (1 original), %d x 409",
                             scalar(@created), scalar(@busy));
    my @orig = grep { !defined hdr($_, 'Idempotent-Replayed') } @created;
    Test::More::is(scalar(@orig), 1, "$name - exactly one 201 is the original");
    Test::More::is(scalar(grep { (hdr($_, 'Idempotent-Replayed') // '') eq 'true' } @created),
                   @created - 1, "$name - the other 201s are replays");
    my %bodies = map { $_->{body} => 1 } @created;
    Test::More::is(scalar(keys %bodies), 1, "$name - all 201 bodies are identical")
        or Test::More::diag(join "\n", keys %bodies);
    my %locs = map { (hdr($_, 'Location') // '') => 1 } @created;
    Test::More::is(scalar(keys %locs), 1, "$name - all 201s have the same Location");
    Test::More::is(ncalls(qr{ burst-1$}), 3,
                   "$name - each service was called once with the key")
        or Test::More::diag(join "\n", calls());
    Test::More::is(ncalls(qr{^/pay/\S+ burst-1$}), 1, "$name - the payment exactly once");
    Test::More::is(xlen(), 2, "$name - two events: the block's checkout and the key's");

    if (@orig) {
        my $after = post(key => 'burst-1', pay => 'wait300ms');
        is_replay_of($name, $after, $orig[0], 'a retry after the burst');
    }
});

# TEST 6: each pair: the form the first request used, the retry's form
CheckoutTest::define_check(key_forms => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $first = first_reply($body, $doc, 201,
                            Location => "/checkout/" . ($doc->{checkoutId} // ''));
    is_replay_of($name, post(key => 'k-"quoted"-\\-1'), $first,
                 'the escaped sf-string key, retried bare');
    is_replay_of($name, post(key => '"k-\\"quoted\\"-\\\\-1"'), $first,
                 'the escaped sf-string key, retried quoted');
    Test::More::is(ncalls(), 3, "$name - the retries called no service");

    my $q = post(key => '"8e03978e-40d5-43e8-bc93-6894a57f9324"');
    is_original($name, $q, 201, 'a quoted key');
    Test::More::is($q->{doc}{stepGot}{idempotencyKey},
                   '8e03978e-40d5-43e8-bc93-6894a57f9324',
                   "$name - a quoted key: the step gets it unquoted");
    is_replay_of($name, post(key => '8e03978e-40d5-43e8-bc93-6894a57f9324'),
                 $q, 'the quoted key, retried bare');

    my $bare = post(key => 'bare-3');
    is_original($name, $bare, 201, 'a bare key');
    Test::More::is($bare->{doc}{stepGot}{idempotencyKey}, 'bare-3',
                   "$name - a bare key: the step gets it");
    is_replay_of($name, post(key => '"bare-3"'), $bare, 'the bare key, retried quoted');
    Test::More::is(ncalls(), 9, "$name - three checkouts ran, three steps each");
});

# TEST 7
CheckoutTest::define_check(required => sub {
    my ($block) = @_;
    my $name = $block->name;
    Test::More::is(ncalls(), 0, "$name - without a key no service was called");
    Test::More::is(CheckoutRedis::cmd('DBSIZE'), 0, "$name - nothing in Redis");
    my $r = post(key => 'req-1');
    is_original($name, $r, 201, 'with a key');
    is_replay_of($name, post(key => 'req-1'), $r, 'with the key again');
    Test::More::is(ncalls(), 3, "$name - one checkout ran");
});

# TEST 8
CheckoutTest::define_check(optional_no_key => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $r = post();
    is_original($name, $r, 201, 'the same body again');
    Test::More::isnt($r->{doc}{checkoutId}, $doc->{checkoutId},
                     "$name - a second checkout");
    Test::More::is(ncalls(), 6, "$name - both ran all three steps");
    Test::More::is(xlen(), 2, "$name - two events");
    Test::More::is(scalar(idem_records()), 0, "$name - no idempotency record");
});

# TEST 9
CheckoutTest::define_check(off_with_key => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $r = post(key => 'off-1');
    is_original($name, $r, 201, 'the same key again');
    Test::More::isnt($r->{doc}{checkoutId}, $doc->{checkoutId},
                     "$name - a second checkout");
    Test::More::is($r->{doc}{stepGot}{idempotencyKey}, 'off-1',
                   "$name - the step still gets the key");
    my $bad = post(key => '"abc');
    is_original($name, $bad, 201, 'a malformed key where keys are off');
    Test::More::ok(exists $bad->{doc}{stepGot}
                   && !defined $bad->{doc}{stepGot}{idempotencyKey},
                   "$name - a malformed key: the step gets null");
    Test::More::is(ncalls(), 9, "$name - all three ran all three steps");
});

# TEST 10: [what, headers]; each must be 400 invalid_idempotency_key
my $K = 'k';
my @INVALID = (
    ['256 bytes, quoted',        ['Idempotency-Key: "' . ($K x 256) . '"']],
    ['an empty quoted string',   ['Idempotency-Key: ""']],
    ['an empty header',          ['Idempotency-Key:']],
    ['a control character',      ["Idempotency-Key: ab\x01cd"]],
    ['a tab',                    ["Idempotency-Key: ab\tcd"]],
    ['DEL',                      ["Idempotency-Key: ab\x7fcd"]],
    ['a control character, quoted', ["Idempotency-Key: \"ab\x1bcd\""]],
    ['two headers, same value',  ['Idempotency-Key: two-1', 'Idempotency-Key: two-1']],
    ['two headers, other case',  ['idempotency-key: two-2', 'Idempotency-Key: two-3']],
    ['a malformed sf-string "abc', ['Idempotency-Key: "abc']],
    ['an unescaped quote inside an sf-string', ['Idempotency-Key: "ab"cd"']],
    ['an sf-string escape other than \\" and \\\\', ['Idempotency-Key: "ab\\ncd"']],
);

CheckoutTest::define_check(invalid_keys => sub {
    my ($block) = @_;
    my $name = $block->name;
    for my $c (@INVALID) {
        my $r = post(headers => $c->[1]);
        is_refusal($name, $r, 400, 'invalid_idempotency_key', $c->[0]);
    }
    Test::More::is(ncalls(), 0, "$name - no invalid key called a service");
    Test::More::is(CheckoutRedis::cmd('DBSIZE'), 0, "$name - nothing in Redis");

    my @valid = (
        ['255 bytes', $K x 255],
        ['255 bytes once unquoted', '"' . ('q' x 255) . '"'],
        ['one byte', 'x'],
        ['an escaped backslash', '"\\\\"'],
    );
    for my $c (@valid) {
        my $r = post(key => $c->[1]);
        is_original($name, $r, 201, $c->[0]);
        is_replay_of($name, post(key => $c->[1]), $r, "$c->[0], retried");
    }
    Test::More::is(ncalls(), 3 * @valid, "$name - each valid key ran once");
});

# TEST 11
CheckoutTest::define_check(nothing_called => sub {
    my ($block) = @_;
    my $name = $block->name;
    Test::More::is(ncalls(), 0, "$name - no service was called");
    Test::More::is(CheckoutRedis::cmd('DBSIZE'), 0, "$name - nothing in Redis");
});

# TEST 12
CheckoutTest::define_check(scoped => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $a = first_reply($body, $doc, 201,
                        Location => "/checkout/" . ($doc->{checkoutId} // ''));
    my $b = post(uri => '/express-checkout', key => 'scope-1');
    is_original($name, $b, 201, 'the same key on /express-checkout');
    Test::More::isnt($b->{doc}{checkoutId}, $doc->{checkoutId},
                     "$name - another checkout");
    Test::More::is(hdr($b, 'Location'),
                   '/express-checkout/' . ($b->{doc}{checkoutId} // ''),
                   "$name - its Location is its own");
    is_replay_of($name, post(key => 'scope-1'), $a, '/checkout again');
    is_replay_of($name, post(uri => '/express-checkout', key => 'scope-1'), $b,
                 '/express-checkout again');
    Test::More::is(ncalls(qr{^/pay/}), 2, "$name - the payment service was called twice");
    Test::More::is(scalar(idem_records()), 2, "$name - two idempotency records");
});

# TEST 13, 14: the failed checkout released its key; the retry runs
CheckoutTest::define_check(failed_released => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    # a payment cut off at its deadline is logged when it ends
    CheckoutRedis::wait_for(sub { calls(qr{^/pay/}) >= 1 },
                            2 * CheckoutTest::slack());
    Test::More::is(scalar(idem_records()), 0, "$name - the key's record is gone");
    my $r = post(key => 'retry-me', pay => 'ok');
    is_original($name, $r, 201, 'the retry with the same key');
    Test::More::isnt($r->{doc}{checkoutId}, $doc->{checkoutId},
                     "$name - the retry is a new checkout");
    Test::More::is(ncalls(qr{^/pay/ok }), 1, "$name - the retry called the payment service");
    # now the key holds the confirmed reply, whatever the payment would say
    my $again = post(key => 'retry-me', pay => '503');
    is_replay_of($name, $again, $r, 'a third try');
    Test::More::is(ncalls(qr{^/pay/}), 2, "$name - two payment calls in all");
});

# TEST 15, 16, 17: the outcome is kept; the retry replays it
CheckoutTest::define_check(outcome_kept => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $first = first_reply($body, $doc, $block->error_code,
        ($doc->{status} // '') eq 'pending_review'
          ? (Location => "/checkout/" . ($doc->{checkoutId} // ''),
             'Retry-After' => '5')
          : ());
    # a payment cut off at its deadline is logged when it ends
    CheckoutRedis::wait_for(sub { calls(qr{^/pay/}) >= 1 },
                            2 * CheckoutTest::slack());
    my $n = ncalls(qr{^/pay/});
    Test::More::is($n, 1, "$name - the first request called the payment service");
    my $r = post(key => 'final-1', pay => 'ok');
    is_replay_of($name, $r, $first, 'the retry, though the payment would now pass');
    Test::More::is(ncalls(qr{^/pay/}), $n, "$name - the retry called no payment");
    Test::More::is(ncalls(qr{^/pay/ok }), 0, "$name - /pay/ok never called");
    Test::More::is(scalar(idem_records()), 1, "$name - the key's record is kept");
});

# TEST 18
CheckoutTest::define_check(ttl_expires => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my @rec = idem_records();
    my $pttl = @rec ? CheckoutRedis::cmd('PTTL', $rec[0]) : -2;
    Test::More::ok($pttl > 0 && $pttl <= 1000, "$name - the record lives 1 s")
        or Test::More::diag("PTTL: $pttl");
    my $first = first_reply($body, $doc, 201,
                            Location => "/checkout/" . ($doc->{checkoutId} // ''));
    is_replay_of($name, post(key => 'short-1'), $first, 'retry within the ttl');
    CheckoutRedis::wait_for(sub { !idem_records() }, 3);
    my $r = post(key => 'short-1');
    is_original($name, $r, 201, 'retry after the ttl');
    Test::More::isnt($r->{doc}{checkoutId}, $doc->{checkoutId}, "$name - a new checkout");
    Test::More::is(ncalls(qr{^/pay/}), 2, "$name - the payment service was called again");
});

# TEST 19
CheckoutTest::define_check(redis_down_from_start => sub {
    my ($block) = @_;
    my $name = $block->name;
    Test::More::is(ncalls(), 0, "$name - the keyed request called no service");
    Test::More::is(scalar(spool_lines()), 0, "$name - and spooled nothing");

    my $r = post(pay => 'ok');
    is_original($name, $r, 201, 'without a key');
    Test::More::is($r->{doc}{status}, 'confirmed', "$name - without a key: confirmed");
    my $id = $r->{doc}{checkoutId} // 'none';
    my @lines = spool_lines();
    Test::More::is(scalar(@lines), 1, "$name - one spooled command");
    Test::More::ok(scalar(grep { index($_, $id) >= 0 } @lines),
                   "$name - the keyless checkout's event is in the spool");

    CheckoutRedis::restart();
    Test::More::ok(CheckoutRedis::wait_for(sub { xlen() == 1 }, 10 * CheckoutTest::slack()),
                   "$name - the spool is replayed once Redis is back");
    my $k = post(key => 'down-1', pay => 'ok');
    is_original($name, $k, 201, 'the keyed retry once Redis is back');
    is_replay_of($name, post(key => 'down-1', pay => 'ok'), $k, 'and its retry');
    Test::More::is(ncalls(qr{ down-1$}), 3, "$name - the key's checkout ran once");
});

# TEST 20
CheckoutTest::define_check(redis_stopped_after => sub {
    my ($block) = @_;
    my $name = $block->name;
    CheckoutRedis::stop();
    my $r = post(key => 'gone-1');
    is_refusal($name, $r, 503, 'idempotency_unavailable', 'the retry with Redis stopped');
    Test::More::is(hdr($r, 'Retry-After'), '1', "$name - Retry-After: 1");
    Test::More::is(ncalls(), 3, "$name - the retry called no service");
    Test::More::is(scalar(spool_lines()), 0, "$name - and spooled nothing");
});

# TEST 21
CheckoutTest::define_check(redis_paused => sub {
    my ($block) = @_;
    my $name = $block->name;
    CheckoutRedis::pause();
    my $t0 = time;
    my $r = post(key => 'slow-redis-1', pay => 'ok');
    my $took = time - $t0;
    CheckoutRedis::resume();
    is_refusal($name, $r, 503, 'idempotency_unavailable', 'Redis not answering');
    Test::More::is(hdr($r, 'Retry-After'), '1', "$name - Retry-After: 1");
    Test::More::cmp_ok($took, '<', 0.6 * CheckoutTest::slack(),
                       "$name - answered after checkout_redis_timeout, not later");
    Test::More::is(ncalls(qr{ slow-redis-1$}), 0, "$name - no service was called");

    # "nothing was done": the retry Retry-After invites runs the checkout
    my $retry;
    sleep 1.1;
    # every 0.3 s while nginx makes its Redis connection again
    CheckoutProc::wait_for(sub {
        $retry = post(key => 'slow-redis-1', pay => 'ok');
        ($retry->{status} // 0) != 503;
    }, 4 * CheckoutTest::slack(), 0.3);
    is_original($name, $retry, 201, 'the retry after Retry-After, Redis answering again')
        or Test::More::diag("in Redis: " . join "", Test::More::explain({ map {
            ($_ => { %{ CheckoutRedis::hgetall($_) },
                     _pttl => CheckoutRedis::cmd('PTTL', $_) }) } idem_records() }));
    Test::More::is(ncalls(qr{^/pay/\S+ slow-redis-1$}), 1,
                   "$name - the retry called the payment service");
});

# TEST 22, 23: the checkout's record is spooled (Redis stopped while its
# steps run); Redis comes back with its data (22) or without it (23: a
# Redis without persistence, or a failover).
sub record_spooled {
    my ($empty, $block) = @_;
    my $name = $block->name;

    my $sock = CheckoutTest::http_connect();
    my $req = CheckoutTest::build_request(method => 'POST', uri => '/checkout',
        body => $Cart, close => 1,
        headers => ['Idempotency-Key: spooled-1', 'X-Pay: wait600ms']);
    syswrite($sock, $req) == length $req or Test::More::fail("$name - send: $!");
    CheckoutRedis::wait_for(sub { scalar idem_records() },
                            2 * CheckoutTest::slack());
    CheckoutRedis::stop();    # while the payment step runs

    my $r1 = CheckoutTest::http_send_recv($sock, '', 5);
    close $sock;
    $r1->{doc} = CheckoutTest::json_decode($r1->{body} // '') || {};
    is_original($name, $r1, 201, 'the checkout Redis left during its steps');
    my $id = $r1->{doc}{checkoutId} // 'none';
    Test::More::ok(scalar(grep { index($_, $id) >= 0 } spool_lines()),
                   "$name - its record went to the spool");

    my $down = post(key => 'spooled-1', pay => 'ok');
    is_refusal($name, $down, 503, 'idempotency_unavailable', 'a retry while Redis is down');

    # its append-only file gone, the server starts empty
    File::Path::remove_tree(glob(CheckoutRedis::dir() . '/appendonly*')) if $empty;
    CheckoutRedis::restart();
    Test::More::is(CheckoutRedis::cmd('DBSIZE'), 0, "$name - Redis is back empty")
        if $empty;
    Test::More::ok(CheckoutRedis::wait_for(sub { xlen() == ($empty ? 1 : 2) },
                                           10 * CheckoutTest::slack()),
                   "$name - the spool is replayed once Redis is back");
    my $r2 = post(key => 'spooled-1', pay => 'ok');
    is_replay_of($name, $r2, $r1, 'the retry after the replay of the spool')
        or Test::More::diag("in Redis: " . join "", Test::More::explain({ map {
            ($_ => CheckoutRedis::hgetall($_)) } idem_records() }));
    Test::More::is(ncalls(qr{^/pay/\S+ spooled-1$}), 1,
                   "$name - the payment service was called once with the key");
}

CheckoutTest::define_check(record_spooled => sub { record_spooled(0, @_) });
CheckoutTest::define_check(record_spooled_empty => sub { record_spooled(1, @_) });

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a new key runs the checkout; a retry with the same key and body replays its reply byte for byte and calls nothing
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: order-7f3a
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- response_headers_like
Location: ^/checkout/chk_[A-Za-z0-9]{22}$
Idempotent-Replayed:
Retry-After:
--- checkout_json
status: "confirmed"
checkoutId =~ ^chk_[A-Za-z0-9]{22}$
orderId =~ ^ord_[0-9a-f]{32}$
--- checkout_check: replayed_once
--- no_error_log
[error]
[warn]



=== TEST 2: the same key with another body: 422 idempotency_key_reused, nothing called
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: reuse-1
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_json
status: "confirmed"
--- checkout_check: other_body
--- no_error_log
[error]
[warn]



=== TEST 3: bad input with a key is refused before the key is taken: the same key with a good body runs
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: bad-input-1
--- request
POST /checkout
{"customerId":"cus_1",
--- error_code: 400
--- checkout_json
status: "invalid_request"
error: "malformed_json"
--- checkout_check: bad_input_keeps_key_free
--- no_error_log
[error]
[warn]



=== TEST 4: the same key while the first is still running: 409 idempotency_key_in_use with Retry-After
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_timeout 3s;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
X-Pay: ok
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_json
status: "confirmed"
--- checkout_check: in_use
--- no_error_log
[error]
[warn]



=== TEST 5: 50 concurrent requests with one key: the payment is called once; every reply is the checkout's 201 or 409
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
X-Pay: ok
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_json
status: "confirmed"
--- checkout_check: burst_one_key
--- timeout: 10
--- no_error_log
[error]
[warn]



=== TEST 6: the sf-string and the bare form are one key; an escaped quote and backslash; the steps get the key unquoted
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/echo;
        checkout_step authorize /_cnt/echo;
        checkout_step create    /_cnt/echo;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: "k-\"quoted\"-\\-1"
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_json
status: "confirmed"
stepGot.step: "create"
stepGot.idempotencyKey: "k-\"quoted\"-\\-1"
stepGot.results.validate.stepGot.idempotencyKey: "k-\"quoted\"-\\-1"
stepGot.results.authorize.stepGot.idempotencyKey: "k-\"quoted\"-\\-1"
--- checkout_check: key_forms
--- no_error_log
[error]
[warn]



=== TEST 7: required (set at http level), no header: 400 idempotency_key_required and no step; with a key it runs
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    checkout_idempotency required;
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 400
--- response_headers_like
Content-Type: ^application/json$
Idempotent-Replayed:
--- checkout_json
status: "invalid_request"
error: "idempotency_key_required"
message is string
checkoutId !
--- checkout_check: required
--- no_error_log
[error]
[warn]



=== TEST 8: optional without a header: the checkout runs, and each request is a new checkout
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/echo;
    }
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- response_headers_like
Idempotent-Replayed:
--- checkout_json
status: "confirmed"
stepGot.idempotencyKey: null
--- checkout_check: optional_no_key
--- no_error_log
[error]
[warn]



=== TEST 9: checkout_idempotency off: a key replays nothing, and the steps still get it
--- config
    location = /checkout {
        checkout;
        checkout_idempotency off;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/echo;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: off-1
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- response_headers_like
Idempotent-Replayed:
--- checkout_json
status: "confirmed"
stepGot.idempotencyKey: "off-1"
--- checkout_check: off_with_key
--- no_error_log
[error]
[warn]



=== TEST 10: invalid keys: 400 invalid_idempotency_key, nothing called (256 bytes, empty, control characters, two headers, malformed sf-strings); 255 bytes is a key
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers eval
"Content-Type: application/json\nIdempotency-Key: " . ('k' x 256)
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 400
--- response_headers_like
Content-Type: ^application/json$
Idempotent-Replayed:
--- checkout_json
status: "invalid_request"
error: "invalid_idempotency_key"
message is string
checkoutId !
--- checkout_check: invalid_keys
--- no_error_log
[error]
[warn]



=== TEST 11: a lone double quote is no sf-string either: 400 invalid_idempotency_key
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: "
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 400
--- checkout_json
status: "invalid_request"
error: "invalid_idempotency_key"
checkoutId !
--- checkout_check: nothing_called
--- no_error_log
[error]
[warn]



=== TEST 12: the key is scoped by location: the same key on two checkout locations runs twice, neither replays the other
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    checkout_idempotency optional;

    location = /checkout {
        checkout;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
    location = /express-checkout {
        checkout;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: scope-1
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_json
status: "confirmed"
--- checkout_check: scoped
--- no_error_log
[error]
[warn]



=== TEST 13: a failed checkout (payment 503) releases its key: the retry with it runs again
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: retry-me
X-Pay: 503
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 503
--- response_headers_like
Retry-After: ^5$
Idempotent-Replayed:
--- checkout_json
status: "failed"
step: "authorize"
reason: "unavailable"
retryable: true
--- checkout_check: failed_released
--- no_error_log
[warn]



=== TEST 14: a checkout failed by a step timeout releases its key too
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay timeout=100ms;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: retry-me
X-Pay: wait600ms
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 503
--- response_headers_like
Retry-After: ^5$
--- checkout_json
status: "failed"
step: "authorize"
reason: "timeout"
--- checkout_check: failed_released



=== TEST 15: a declined checkout keeps its key: the retry replays the 402, the payment is not called again
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: final-1
X-Pay: decline
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 402
--- response_headers_like
Idempotent-Replayed:
Location:
--- checkout_json
status: "declined"
step: "authorize"
reason: "card_declined"
--- checkout_check: outcome_kept
--- no_error_log
[error]
[warn]



=== TEST 16: pending_review keeps its key: the replay has the same Location and Retry-After
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay timeout=100ms on_timeout=pending;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: final-1
X-Pay: wait600ms
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 202
--- response_headers_like
Location: ^/checkout/chk_[A-Za-z0-9]{22}$
Retry-After: ^5$
Idempotent-Replayed:
--- checkout_json
status: "pending_review"
step: "authorize"
--- checkout_check: outcome_kept



=== TEST 17: requires_action keeps its key: the retry replays the action
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: final-1
X-Pay: 3ds
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 202
--- checkout_json
status: "requires_action"
action.type: "redirect_to_url"
--- checkout_check: outcome_kept
--- no_error_log
[error]
[warn]



=== TEST 18: ttl=1s: the reply is kept 1 s; after that the key is new again
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional ttl=1s;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: short-1
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_check: ttl_expires
--- no_error_log
[error]
[warn]



=== TEST 19: Redis stopped: a key gets 503 idempotency_unavailable and no step runs; without a key the checkout runs and its event is spooled
--- redis_stopped
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: down-1
X-Pay: ok
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 503
--- response_headers_like
Retry-After: ^1$
Idempotent-Replayed:
--- checkout_json
error: "idempotency_unavailable"
message is string
checkoutId !
--- checkout_check: redis_down_from_start
--- timeout: 10



=== TEST 20: Redis stopped after the key's checkout: the retry cannot be checked, 503 idempotency_unavailable, not a replay
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_cnt/pay/ok;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
Idempotency-Key: gone-1
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_check: redis_stopped_after



=== TEST 21: Redis not answering (paused): 503 idempotency_unavailable after checkout_redis_timeout; nothing was done, so the retry runs
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
X-Pay: ok
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_check: redis_paused
--- timeout: 10



=== TEST 22: Redis gone while the steps run: the record goes to the spool with the event, and once replayed the retry replays the reply
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
X-Pay: ok
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_check: record_spooled
--- timeout: 10



=== TEST 23: Redis comes back empty after the record was spooled: once the spool is replayed the retry still replays the reply
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional;
        checkout_step validate  /_cnt/cart/ok;
        checkout_step authorize /_pay;
        checkout_step create    /_cnt/orders/ok;
    }
--- more_headers
Content-Type: application/json
X-Pay: ok
--- request eval
"POST /checkout\n$::Cart"
--- error_code: 201
--- checkout_check: record_spooled_empty
--- timeout: 10



=== TEST 24: checkout_idempotency maybe: refused
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency maybe;
        checkout_step validate /_cnt/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/maybe/, 'checkout_idempotency maybe')



=== TEST 25: checkout_idempotency optional ttl=abc: refused
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional ttl=abc;
        checkout_step validate /_cnt/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/ttl/, 'checkout_idempotency optional ttl=abc')



=== TEST 26: checkout_idempotency with an unknown parameter: refused
--- http_config
    checkout_spool $TEST_NGINX_SPOOL_DIR;
--- config
    location = /checkout {
        checkout;
        checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        checkout_idempotency optional keep=1h;
        checkout_step validate /_cnt/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/keep=1h/, 'checkout_idempotency optional keep=1h')



=== TEST 27: checkout_idempotency without checkout_redis: refused
--- config
    location = /checkout {
        checkout;
        checkout_idempotency optional;
        checkout_step validate /_cnt/cart/ok;
    }
--- must_die
--- error_log eval
CheckoutTest::at_conf_line(qr/checkout_idempotency.*checkout_redis/)
