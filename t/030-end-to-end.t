# End to end: nginx with the module, a real redis-server, the real
# checkout-worker (AddressSanitizer build) and real HTTP receivers, wired as
# the demo wires them (conf/demo/nginx.conf, conf/worker.conf). One checkout
# per outcome; for each, what the client was told, the stream entries the
# module and the worker appended (every field), the deliveries each group's
# receiver got (every ce-* header, Content-Type, Idempotency-Key, body), the
# state hash (every field) and the status endpoint once the worker is done,
# and what a retry with the same Idempotency-Key gets. Both halves are the
# real programs, so a field renamed on one side fails here.
#
# The step services are the mock services of t/lib/CheckoutTest.pm; the
# payment step picks its answer from the cart's test token, as the demo's
# mocks do: tok_visa authorized, tok_decline 402, tok_3ds requires_action,
# tok_timeout no answer in time (the step has on_timeout=pending), tok_error
# 503. The worker's groups and their receivers (t/lib/CheckoutReceiver.pm):
#   receipt      OrderConfirmed          200
#   fulfillment  OrderConfirmed          503, then 200 (every event retried)
#   analytics    every type              200
#   support      CheckoutDeclined        200
#   review       CheckoutPendingReview   200 {checkoutStatus, orderId, emit}
# Redis is not emptied between blocks (the worker keeps its groups): a block
# looks at what was appended and delivered since it began, and the history
# checker (t/lib/CheckoutHistory.pm) at everything so far.
#
# A block runs one checkout (--- request) and --- checkout_check: e2e, which
# waits until the worker is done and checks these sections ("$checkoutId"
# stands for the reply's checkoutId):
#   --- e2e_reply       the reply body, CheckoutTest::check_json_lines()
#                       lines; the lines name every field of each object
#                       they look into, no more, no fewer
#   --- e2e_entries     the entries appended since the block began, in order:
#                       "== CE_ID" and that entry's lines (data decoded), or
#                       "none"
#   --- e2e_deliveries  "GROUP CE_ID STATUS..." lines: all that each group's
#                       receiver got since the block began, in order, with
#                       the status it answered to each attempt; a group
#                       without a line got nothing
#   --- e2e_state       the state hash checkout:<id> once the worker is
#                       done, in e2e_reply's lines
#   --- e2e_status      GET /checkout/<id> then: 200, and its body in
#                       e2e_reply's lines
#   --- e2e_retry       "replayed": the same request again gets the stored
#                       reply; "runs again": it runs as a new checkout
#
#   make test T=t/030-end-to-end.t

use Test::Nginx::Socket;
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use CheckoutRedis ();
use CheckoutWorker ();
use CheckoutHistory ();
use File::Temp qw(tempdir);
use JSON::PP ();
use Test::More ();

CheckoutWorker::setup();

my $SpoolDir = tempdir('checkout-e2e-spool-XXXXXXXX', DIR => '/tmp',
                        CLEANUP => 1);
$ENV{TEST_NGINX_SPOOL_DIR} = $SpoolDir;

# Under valgrind nginx is several times slower: its budgets and its waits
# for Redis grow with it.
my $Slack = CheckoutTest::slack();
$ENV{TEST_NGINX_E2E_BUDGET} = 3 * $Slack . 's';
$ENV{TEST_NGINX_E2E_PAY_TIMEOUT} = 1000 * $Slack . 'ms';
$ENV{TEST_NGINX_E2E_REDIS_TIMEOUT} = 1000 * $Slack . 'ms';
my $Settle = 20 * $Slack;

# NAME => [receiver path, types]: the groups of conf/worker.conf.
my @Groups = (
    receipt     => ['/ok', 'OrderConfirmed'],
    fulfillment => ['/flaky/1', 'OrderConfirmed'],
    analytics   => ['/ok'],
    support     => ['/ok', 'CheckoutDeclined'],
    review      => ['/json/review', 'CheckoutPendingReview'],
);
my @GroupNames = @Groups[grep { $_ % 2 == 0 } 0 .. $#Groups];
my %Rx = map { ($_ => CheckoutWorker::receiver()) } @GroupNames;

# The review service settles a pending_review checkout: the payment went
# through, the order exists.
$Rx{review}->set_json('review', body => {
    checkoutStatus => 'confirmed', orderId => 'ord_review_1',
    emit => [ { type => 'OrderConfirmed',
                data => { status => 'confirmed', orderId => 'ord_review_1',
                          reviewed => JSON::PP::true } } ],
});

# The short timings of the worker suites, but a delivery timeout that a
# receiver on a loaded machine does not miss (nothing here waits for it to
# pass): a late 200 would be retried, and the deliveries listed would not be
# all there were.
my $Timeout = 5;
my (@WorkerGroups, @HistoryGroups);
{
    my @g = @Groups;
    while (my ($name, $spec) = splice @g, 0, 2) {
        my ($path, @types) = @$spec;
        push @WorkerGroups, $name => { url => $Rx{$name}->url($path),
                                       types => @types ? \@types : undef,
                                       timeout => "${Timeout}s",
                                       'min-idle' => 2 * $Timeout . 's' };
        push @HistoryGroups, $name => { rx => $Rx{$name},
                                        timeout => $Timeout,
                                        @types ? (types => \@types) : () };
    }
}
my $Worker = CheckoutWorker->start(name => 'e2e', groups => \@WorkerGroups);
my $History = CheckoutHistory->new(groups => \@HistoryGroups);

my $S = $CheckoutWorker::Stream;
my $ID = CheckoutTest::id_re();

my $HttpConfig = <<'_EOC_';
    checkout_spool $TEST_NGINX_SPOOL_DIR;

    # The payment service's answer, by the cart's test token: a step's
    # request body is its step document, with the client's cart in it.
    map $request_body $e2e_payment {
        "~\"token\":\"tok_visa\""     ok;
        "~\"token\":\"tok_decline\""  decline;
        "~\"token\":\"tok_3ds\""      3ds;
        "~\"token\":\"tok_timeout\""  sleep10;
        "~\"token\":\"tok_error\""    503;
        default                       404-json;
    }
_EOC_

my $Config = <<'_EOC_';
    checkout_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    checkout_redis_timeout $TEST_NGINX_E2E_REDIS_TIMEOUT;

    location = /checkout {
        checkout;
        checkout_timeout $TEST_NGINX_E2E_BUDGET;
        checkout_idempotency optional;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_e2e_payment timeout=$TEST_NGINX_E2E_PAY_TIMEOUT on_timeout=pending;
        checkout_step create    /_svc/orders/ok;
    }

    location ~ ^/checkout/(?<checkout_ref>[^/]+)$ {
        checkout_status $checkout_ref;
    }

    location = /_e2e_payment {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/pay/$e2e_payment;
    }
_EOC_

CheckoutTest::use_mock_services(default_config => $Config);

# Where the block began: the stream's last id, each receiver's count.
my %Mark;

my $RelinkedOnly = qr/\[error\](?! \S+ checkout redis \S+: a command timed out, reconnecting$)/;

add_block_preprocessor(sub {
    my ($block) = @_;
    $block->set_value(http_config => ($block->http_config // '')
                                     . $HttpConfig);
    $block->set_value(init => 'main::redis_link_up()');
    # Under valgrind nginx can also be busy past that PING's deadline while
    # it starts (see redis_link_up): the link is made again, and says so at
    # [error]; no other [error] may be there.
    if ($ENV{TEST_NGINX_USE_VALGRIND} && defined $block->no_error_log) {
        $block->set_value(no_error_log => [
            map { $_ eq '[error]' ? $RelinkedOnly : $_ }
            split /\n+/, $block->no_error_log ]);
    }
    %Mark = (stream => last_id(),
             map { ($_ => scalar(my @r = $Rx{$_}->requests)) } @GroupNames);
});

# Waits (bounded) until the new nginx has its Redis link up: its first
# PING answered. A first request that keeps nginx busy longer than that
# PING's deadline (1 s, fixed), as under valgrind, makes the PING time out
# although its answer is there, and the link is dropped with the checkout's
# own command on it.
sub redis_link_up {
    my $log = server_root() . '/logs/error.log';
    my $up = qr/checkout redis 127\.0\.0\.1:$ENV{TEST_NGINX_REDIS_PORT}: connected/;
    Test::More::ok(CheckoutRedis::wait_for(sub {
        open my $in, '<', $log or return 0;
        return scalar grep { $_ =~ $up } <$in>;
    }, 10 * $Slack), "nginx's link to Redis is up");
}

sub last_id {
    my ($info, $err) = CheckoutRedis::cmd_err('XINFO', 'STREAM', $S);
    return $err ? '0-0' : { @$info }->{'last-generated-id'};
}

# The entries since the mark, with their fields as XRANGE lists them.
sub new_entries {
    my $r = CheckoutRedis::cmd('XRANGE', $S, "($Mark{stream}", '+');
    return @$r;
}

sub new_requests {
    my ($group) = @_;
    my @r = $Rx{$group}->requests;
    return @r[$Mark{$group} .. $#r];
}

# check_json_lines(), plus: the lines name every field of each object they
# look into (the top one included), no more and no fewer.
sub exact_lines {
    my ($desc, $doc, $spec) = @_;
    CheckoutTest::check_json_lines($desc, $doc, $spec);
    my %named;
    for my $line (split /\n/, $spec) {
        next if $line =~ /^\s*(?:#|$)/;
        my ($path) = $line =~ /^\s*([^\s:]+)/;
        my @seg = split /\./, $path;
        $named{ join '.', @seg[0 .. $_ - 1] }{ $seg[$_] } = 1 for 0 .. $#seg;
    }
    for my $parent (sort keys %named) {
        my ($exists, $obj) = CheckoutTest::json_path($doc,
                                                     length $parent ? $parent
                                                                    : '.');
        my $what = length $parent ? $parent : 'the top object';
        if (ref $obj ne 'HASH') {
            Test::More::fail("$desc - $what is an object");
            next;
        }
        my @extra = grep { !$named{$parent}{$_} } sort keys %$obj;
        my @missing = grep { !exists $obj->{$_} } sort keys %{ $named{$parent} };
        Test::More::ok(!@extra && !@missing,
                       "$desc - $what has exactly the fields named")
            or Test::More::diag("extra: @extra; missing: @missing");
    }
}

sub hdr {
    my ($res, $name) = @_;
    return $res->{headers}{ lc $name };
}

# The block's request again, on a new connection: the runners send the body
# trimmed, and so must a retry, whose body must be the same bytes.
sub request_again {
    my ($block) = @_;
    my ($line, $body) = split /\n/, $block->request, 2;
    my ($method, $uri) = split ' ', $line;
    $body =~ s/^\s+|\s+$//g;
    my @headers = grep { /\S/ } split /\n/, $block->more_headers // '';
    return CheckoutTest::http_request(method => $method, uri => $uri,
                                      body => $body, headers => \@headers,
                                      close => 1, timeout => 5 * $Slack);
}

sub check_entries {
    my ($name, $spec, $sub) = @_;
    my @got = new_entries();
    my @want;
    if ($spec !~ /^\s*none\s*$/) {
        for my $chunk (split /^==\s*/m, $spec) {
            next unless $chunk =~ /\S/;
            my ($ce, $lines) = split /\n/, $chunk, 2;
            push @want, [ $sub->($ce =~ s/\s+$//r), $sub->($lines) ];
        }
    }
    my %f_of;
    for my $e (@got) {
        my %f = @{ $e->[1] };
        $f_of{ $f{ce_id} // '' } = $e;
    }
    Test::More::is(join(' ', map { { @{ $_->[1] } }->{ce_id} // '?' } @got),
                   join(' ', map { $_->[0] } @want),
                   "$name - the entries appended: their ce_ids, in order");
    for my $w (@want) {
        my ($ce, $lines) = @$w;
        my $e = $f_of{$ce} or next;
        my @list = @{ $e->[1] };
        my %doc;
        while (my ($k, $v) = splice @list, 0, 2) {
            Test::More::fail("$name - entry $ce: field $k appears twice")
                if exists $doc{$k};
            $doc{$k} = $v;
        }
        my $data = CheckoutTest::json_decode($doc{data} // '');
        $doc{data} = $data if ref $data;
        exact_lines("$name - entry $ce", \%doc, $lines);
    }
    return \%f_of;
}

# Each group's receiver got exactly the attempts listed, each one the event
# as the worker must deliver it to that group.
sub check_deliveries {
    my ($name, $spec, $sub, $entries) = @_;
    my %want;
    for my $line (split /\n/, $sub->($spec // '')) {
        next unless $line =~ /\S/;
        my ($group, $ce, @status) = split ' ', $line;
        push @{ $want{$group} }, map { "$ce $_" } @status;
    }
    my %path = @Groups;
    for my $g (@GroupNames) {
        my @r = new_requests($g);
        Test::More::is(join(', ', map { ($_->{headers}{'ce-id'} // '?') . ' '
                                        . ($_->{status} // '-') } @r),
                       join(', ', @{ $want{$g} || [] }),
                       "$name - $g got these deliveries (ce-id status)");
        for my $i (0 .. $#r) {
            my $r = $r[$i];
            my $e = $entries->{ $r->{headers}{'ce-id'} // '' } or next;
            my $desc = "$name - $g, attempt " . ($i + 1);
            CheckoutWorker::request_is_event($r, { fields => $e->[1] }, $g,
                                             $desc);
            Test::More::is($r->{path}, $path{$g}[0], "$desc: to its URL");
            my @ce = sort grep { /^ce-/ } keys %{ $r->{headers} };
            Test::More::is("@ce", 'ce-id ce-schemaversion ce-source '
                                  . 'ce-specversion ce-subject ce-time ce-type',
                           "$desc: no other ce-* header");
        }
    }
}

sub check_status {
    my ($name, $id, $spec) = @_;
    my $res = CheckoutTest::http_request(method => 'GET',
                                         uri => "/checkout/$id", close => 1,
                                         timeout => 5 * $Slack);
    Test::More::is($res->{status}, 200, "$name - GET /checkout/<id>: 200")
        or Test::More::diag($res->{error} // $res->{body});
    Test::More::is(hdr($res, 'Content-Type'), 'application/json',
                   "$name - status: Content-Type");
    Test::More::is(hdr($res, 'Cache-Control'), 'no-store',
                   "$name - status: Cache-Control");
    my $doc = CheckoutTest::json_decode($res->{body} // '');
    exact_lines("$name - status", $doc, $spec);
}

sub check_retry {
    my ($block, $name, $id, $body, $how) = @_;
    my $before = last_id();
    my $res = request_again($block);
    my $doc = CheckoutTest::json_decode($res->{body} // '') || {};
    $History->record_response($res);
    Test::More::is($res->{status}, $block->error_code,
                   "$name - retry: the same status")
        or Test::More::diag($res->{error} // $res->{body});
    if ($how eq 'replayed') {
        Test::More::ok(defined $res->{body} && $res->{body} eq $body,
                       "$name - retry: the stored body, byte for byte")
            or Test::More::diag("got: " . ($res->{body} // ''));
        Test::More::is(hdr($res, 'Idempotent-Replayed'), 'true',
                       "$name - retry: Idempotent-Replayed: true");
    } else {
        Test::More::like($doc->{checkoutId} // '', $ID,
                         "$name - retry: a checkout id");
        Test::More::isnt($doc->{checkoutId} // '', $id,
                         "$name - retry: a new checkout (the key was "
                         . "released)");
        Test::More::is($doc->{status}, CheckoutTest::json_decode($body)->{status},
                       "$name - retry: the same outcome");
        Test::More::ok(!defined hdr($res, 'Idempotent-Replayed'),
                       "$name - retry: not a replay");
        Test::More::is(CheckoutRedis::hgetall("checkout:$doc->{checkoutId}")
                       ->{status}, $doc->{status},
                       "$name - retry: its state hash")
            if defined $doc->{checkoutId};
    }
    Test::More::ok($History->settle($Settle), "$name - retry: settled");
    Test::More::is(last_id(), $before, "$name - retry: nothing appended");
}

CheckoutTest::define_check(e2e => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    my $id = ref $doc eq 'HASH' ? $doc->{checkoutId} // '' : '';
    Test::More::like($id, $ID, "$name - the reply has a checkout id")
        or return;
    my $sub = sub { my $s = shift; $s =~ s/\$checkoutId\b/$id/g; $s };
    $History->record(id => $id, outcome => $doc->{status},
                     status => $block->error_code);

    exact_lines("$name - reply", $doc, $sub->($block->e2e_reply));
    Test::More::ok($History->settle($Settle),
                   "$name - the worker finished within $Settle s")
        or Test::More::diag($Worker->log_tail(30));
    my $entries = check_entries($name, $block->e2e_entries, $sub);
    check_deliveries($name, $block->e2e_deliveries, $sub, $entries);
    exact_lines("$name - state",
                CheckoutRedis::hgetall("checkout:$id"),
                $sub->($block->e2e_state));
    check_status($name, $id, $sub->($block->e2e_status));
    check_retry($block, $name, $id, $body, $block->e2e_retry =~ s/\s+$//r);

    $History->check_ok("$name - history so far: nothing lost, duplicated "
                       . "or unexpected");
    Test::More::is(CheckoutRedis::xlen($CheckoutWorker::Dlq), 0,
                   "$name - no dead letter");
});

no_shuffle();
run_tests();

Test::More::ok($History->settle($Settle), 'at the end: settled');
$History->check_ok('at the end: nothing lost, duplicated or unexpected');
# What the check above looked at: not an empty history.
Test::More::is(scalar(my @r = $History->replies), 10,
               'at the end: 10 replies recorded (5 checkouts, 5 retries)');
Test::More::is(CheckoutRedis::xlen($S), 4, 'at the end: 4 entries (3 from '
               . 'the module, 1 from the review group)');

# The checker reads the live stream: an entry appended twice behind the
# module's back is reported (the worker acknowledges the copy without a
# call: its done records exist).
{
    my ($first) = CheckoutRedis::xrange($S);
    my %f = %{ $first->[1] };
    my $copy = CheckoutRedis::cmd('XADD', $S, '*',
                                  map { ($_ => $f{$_}) } sort keys %f);
    Test::More::ok($History->settle($Settle), 'a copy of an entry: settled');
    Test::More::is_deeply([ $History->problems ],
                          [ "duplicated: $f{ce_id} is in the stream 2 times: "
                            . "entries $first->[0], $copy" ],
                          'a copy of an entry: the checker reports it');
}
CheckoutWorker::finish();

__DATA__

=== TEST 1: confirmed: receipt, fulfillment (a 503 first), analytics
--- request
POST /checkout
{"customerId":"cus_e2e","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_visa"}}
--- more_headers
Content-Type: application/json
Idempotency-Key: e2e-confirmed
--- error_code: 201
--- response_headers_like
Location: ^/checkout/chk_[A-Za-z0-9]{22}$
Retry-After:
Cache-Control: ^no-store$
Content-Type: ^application/json$
Server-Timing: ^validate;dur=\d+\.\d, authorize;dur=\d+\.\d, create;dur=\d+\.\d, total;dur=\d+\.\d$
--- checkout_check: e2e
--- e2e_reply
status: "confirmed"
checkoutId: "$checkoutId"
orderId: "ord_123"
total: 2500
currency: "EUR"
--- e2e_entries
== $checkoutId
ce_specversion: "1.0"
ce_id: "$checkoutId"
ce_type: "OrderConfirmed"
ce_source: "/checkout"
ce_time =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
ce_subject: "$checkoutId"
ce_schemaversion: "1"
content-type: "application/json"
data.checkoutId: "$checkoutId"
data.status: "confirmed"
data.step: "create"
data.cart: {"customerId":"cus_e2e","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_visa"}}
data.results.validate: {"total":2500,"currency":"EUR"}
data.results.authorize: {"status":"authorized","authorizationId":"auth_1","amount":2500}
data.results.create: {"orderId":"ord_123","total":2500,"currency":"EUR"}
--- e2e_deliveries
receipt      $checkoutId  200
fulfillment  $checkoutId  503 200
analytics    $checkoutId  200
--- e2e_state
status: "confirmed"
orderId: "ord_123"
created =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
updated =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
eventId: "$checkoutId"
receipt: "done"
fulfillment: "done"
analytics: "done"
--- e2e_status
checkoutId: "$checkoutId"
status: "confirmed"
orderId: "ord_123"
tasks: {"receipt":"done","fulfillment":"done","analytics":"done"}
--- e2e_retry: replayed
--- no_error_log
[error]
[warn]



=== TEST 2: declined: support, analytics
--- request
POST /checkout
{"customerId":"cus_e2e","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_decline"}}
--- more_headers
Content-Type: application/json
Idempotency-Key: e2e-declined
--- error_code: 402
--- response_headers_like
Location:
Retry-After:
Cache-Control: ^no-store$
Content-Type: ^application/json$
Server-Timing: ^validate;dur=\d+\.\d, authorize;dur=\d+\.\d, total;dur=\d+\.\d$
--- checkout_check: e2e
--- e2e_reply
status: "declined"
checkoutId: "$checkoutId"
step: "authorize"
reason: "card_declined"
message: "Your card was declined."
--- e2e_entries
== $checkoutId
ce_specversion: "1.0"
ce_id: "$checkoutId"
ce_type: "CheckoutDeclined"
ce_source: "/checkout"
ce_time =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
ce_subject: "$checkoutId"
ce_schemaversion: "1"
content-type: "application/json"
data.checkoutId: "$checkoutId"
data.status: "declined"
data.step: "authorize"
data.cart: {"customerId":"cus_e2e","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_decline"}}
data.results.validate: {"total":2500,"currency":"EUR"}
data.results.authorize: {"reason":"card_declined","message":"Your card was declined.","declineCode":"do_not_honor"}
--- e2e_deliveries
support      $checkoutId  200
analytics    $checkoutId  200
--- e2e_state
status: "declined"
step: "authorize"
created =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
updated =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
eventId: "$checkoutId"
support: "done"
analytics: "done"
--- e2e_status
checkoutId: "$checkoutId"
status: "declined"
tasks: {"support":"done","analytics":"done"}
--- e2e_retry: replayed
--- no_error_log
[error]
[warn]



=== TEST 3: requires_action: no event, nothing delivered
--- request
POST /checkout
{"customerId":"cus_e2e","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_3ds"}}
--- more_headers
Content-Type: application/json
Idempotency-Key: e2e-requires-action
--- error_code: 202
--- response_headers_like
Location:
Retry-After:
Cache-Control: ^no-store$
Content-Type: ^application/json$
Server-Timing: ^validate;dur=\d+\.\d, authorize;dur=\d+\.\d, total;dur=\d+\.\d$
--- checkout_check: e2e
--- e2e_reply
status: "requires_action"
checkoutId: "$checkoutId"
step: "authorize"
action: {"type":"redirect_to_url","url":"https://bank.example/3ds?session=s_1","expiresInSeconds":600}
--- e2e_entries
none
--- e2e_deliveries
--- e2e_state
status: "requires_action"
step: "authorize"
created =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
updated =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
eventId: "$checkoutId"
--- e2e_status
checkoutId: "$checkoutId"
status: "requires_action"
tasks: {}
--- e2e_retry: replayed
--- no_error_log
[error]
[warn]



=== TEST 4: pending_review: the review group confirms it and emits OrderConfirmed
--- request
POST /checkout
{"customerId":"cus_e2e","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_timeout"}}
--- more_headers
Content-Type: application/json
Idempotency-Key: e2e-pending-review
--- timeout: 10
--- error_code: 202
--- response_headers_like
Location: ^/checkout/chk_[A-Za-z0-9]{22}$
Retry-After: ^5$
Cache-Control: ^no-store$
Content-Type: ^application/json$
Server-Timing: ^validate;dur=\d+\.\d, authorize;dur=\d+\.\d, total;dur=\d+\.\d$
--- checkout_check: e2e
--- e2e_reply
status: "pending_review"
checkoutId: "$checkoutId"
step: "authorize"
message: "the authorize step did not answer in time; the checkout is under review"
nextCheckAfterSeconds: 5
statusUrl: "/checkout/$checkoutId"
--- e2e_entries
== $checkoutId
ce_specversion: "1.0"
ce_id: "$checkoutId"
ce_type: "CheckoutPendingReview"
ce_source: "/checkout"
ce_time =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
ce_subject: "$checkoutId"
ce_schemaversion: "1"
content-type: "application/json"
data.checkoutId: "$checkoutId"
data.status: "pending_review"
data.step: "authorize"
data.cart: {"customerId":"cus_e2e","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_timeout"}}
data.results.validate: {"total":2500,"currency":"EUR"}
== $checkoutId:review:1
ce_specversion: "1.0"
ce_id: "$checkoutId:review:1"
ce_type: "OrderConfirmed"
ce_source: "checkout-worker/review"
ce_time =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
ce_subject: "$checkoutId"
ce_schemaversion: "1"
content-type: "application/json"
data: {"status":"confirmed","orderId":"ord_review_1","reviewed":true}
--- e2e_deliveries
review       $checkoutId           200
analytics    $checkoutId           200
receipt      $checkoutId:review:1  200
fulfillment  $checkoutId:review:1  503 200
analytics    $checkoutId:review:1  200
--- e2e_state
status: "confirmed"
orderId: "ord_review_1"
step: "authorize"
created =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
updated =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
eventId: "$checkoutId"
review: "done"
analytics: "done"
receipt: "done"
fulfillment: "done"
--- e2e_status
checkoutId: "$checkoutId"
status: "confirmed"
orderId: "ord_review_1"
tasks: {"review":"done","analytics":"done","receipt":"done","fulfillment":"done"}
--- e2e_retry: replayed
--- error_log
upstream timed out
--- no_error_log
[warn]



=== TEST 5: failed: no event, nothing delivered, the key released
--- request
POST /checkout
{"customerId":"cus_e2e","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_error"}}
--- more_headers
Content-Type: application/json
Idempotency-Key: e2e-failed
--- error_code: 503
--- response_headers_like
Location:
Retry-After: ^5$
Cache-Control: ^no-store$
Content-Type: ^application/json$
Server-Timing: ^validate;dur=\d+\.\d, authorize;dur=\d+\.\d, total;dur=\d+\.\d$
--- checkout_check: e2e
--- e2e_reply
status: "failed"
checkoutId: "$checkoutId"
step: "authorize"
reason: "unavailable"
message: "the authorize step is unavailable"
retryable: true
--- e2e_entries
none
--- e2e_deliveries
--- e2e_state
status: "failed"
step: "authorize"
created =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
updated =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
eventId: "$checkoutId"
--- e2e_status
checkoutId: "$checkoutId"
status: "failed"
tasks: {}
--- e2e_retry: runs again
--- error_log
checkout step "authorize" answered 503
--- no_error_log
[warn]
