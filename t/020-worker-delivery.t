# checkout-worker integration: delivery and its outcomes (docs/worker.md).
#
# A real redis-server (t/lib/CheckoutRedis.pm), a real HTTP receiver
# (t/lib/CheckoutReceiver.pm) and the worker built with AddressSanitizer
# (t/lib/CheckoutWorker.pm). Asserts what a user sees: the HTTP requests
# received, what is in Redis (pending entries, dead letters, the checkout
# state hash, done records) and the worker's log lines.
#
#   prove -It/lib t/020-worker-delivery.t

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
my $TS_RE = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

sub ev_lines {
    my ($w, $ev, %f) = @_;
    return $w->outcomes(ce_id => $ev->{ce_id}, %f);
}

# The dead letters of one stream (default checkout:events) by original_id:
# entry ids are only unique within a stream.
sub dead_letters_by_original {
    my ($stream, $dlq) = @_;
    $stream //= $S;
    return { map { ($_->[1]{original_id} // '') => $_ }
             grep { ($_->[1]{stream} // '') eq $stream }
             CheckoutWorker::dlq($dlq) };
}

CheckoutWorker::scenario('delivery and ack' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'deliver',
        groups => [receipt => { url => $rx->url('/ok') }]);

    my $ev = CheckoutWorker::add_event(type => 'OrderConfirmed');
    my @r = $rx->wait_for_requests(1, 15);
    is(scalar @r, 1, 'the receiver got one request');
    CheckoutWorker::request_is_event($r[0], $ev, 'receipt', 'the delivery')
        if @r;
    is($r[0]{path}, '/ok', 'to the group\'s URL') if @r;

    my ($line) = $w->wait_for_outcome(ce_id => $ev->{ce_id},
                                      result => 'done');
    ok($line, 'a result=done log line') or diag($w->log_tail);
    if ($line) {
        is($line->{group}, 'receipt', 'log: group');
        is($line->{id}, $ev->{entry}, 'log: id = the stream entry id');
        is($line->{ce_type}, 'OrderConfirmed', 'log: ce_type');
        is($line->{attempt}, 1, 'log: attempt=1');
        is($line->{status}, 200, 'log: status=200');
        like($line->{duration_ms} // '', qr/^\d+$/, 'log: duration_ms');
        is($line->{level}, 'info', 'log: level=info');
        like($line->{ts} // '', $TS_RE, 'log: ts RFC 3339 UTC with ms');
    }

    CheckoutWorker::ok_wait('acknowledged: nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    my $done = CheckoutWorker::done_key('receipt', $ev->{ce_id});
    is(CheckoutRedis::cmd('GET', $done), $ev->{entry},
       "done record $done = the entry id");
    my $ttl = CheckoutRedis::cmd('TTL', $done);
    ok($ttl > 0 && $ttl <= 7 * 86400, "done record has a TTL (<= 7d): $ttl");

    my $st = CheckoutWorker::state_of($ev->{ce_id});
    is($st->{receipt}, 'done', 'state hash: receipt=done');
    is($st->{status}, 'confirmed', 'state hash: status untouched');
    is($st->{eventId}, $ev->{ce_id}, 'state hash: eventId untouched');

    my $groups = CheckoutRedis::cmd('XINFO', 'GROUPS', $S);
    my %g = @{ $groups->[0] };
    is($g{name}, 'receipt', 'the group was created');
    is($g{'last-delivered-id'}, $ev->{entry}, 'the group read the entry');

    # No state hash: the worker does not create one.
    my $ev2 = CheckoutWorker::add_event(state => 0);
    ok($w->wait_for_outcome(ce_id => $ev2->{ce_id}, result => 'done'),
       'an event without a state hash is delivered too');
    is(CheckoutRedis::cmd('EXISTS', "checkout:$ev2->{ce_id}"), 0,
       'no state hash is created for it');

    # The Content-Type header comes from the entry's content-type field,
    # application/json when it has none.
    my $ev3 = CheckoutWorker::add_event(
        fields => { 'content-type' => 'application/vnd.checkout+json' });
    my $ev4 = CheckoutWorker::add_event(fields => { 'content-type' => undef });
    $w->wait_for_outcome(ce_id => $_->{ce_id}, result => 'done')
        for $ev3, $ev4;
    my ($r3) = CheckoutWorker::requests_for($rx, $ev3->{ce_id});
    my ($r4) = CheckoutWorker::requests_for($rx, $ev4->{ce_id});
    is($r3 && $r3->{headers}{'content-type'}, 'application/vnd.checkout+json',
       'Content-Type from the content-type field');
    is($r4 && $r4->{headers}{'content-type'}, 'application/json',
       'Content-Type application/json without one');

    # Bodies verbatim: UTF-8 and a large one.
    my $utf8 = CheckoutWorker::add_event(
        data => qq({"name":"J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x9b\x92",)
              . qq("note":"tab\\t \\"q\\"","n":[1,2.5,null,true]}));
    my $big = CheckoutWorker::add_event(
        data => { checkoutId => 'big', blob => 'x' x 300_000 });
    for my $e ($utf8, $big) {
        $w->wait_for_outcome(ce_id => $e->{ce_id}, result => 'done');
        my ($r) = CheckoutWorker::requests_for($rx, $e->{ce_id});
        my %f = @{ $e->{fields} };
        ok($r && $r->{body} eq $f{data},
           'body verbatim (' . length($f{data}) . ' bytes)');
    }

    is($rx->count, 6, 'one request per event, no more');
    is(scalar $w->outcomes(result => qr/^(?!done$)/), 0,
       'no other outcome than done') or diag($w->log_tail);
});

CheckoutWorker::scenario('types filter: other types skipped' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'types',
        groups => [receipt => { url => $rx->url('/ok'),
                                types => 'OrderConfirmed' }]);
    my $skip = CheckoutWorker::add_event(type => 'CheckoutDeclined');
    my $take = CheckoutWorker::add_event(type => 'OrderConfirmed');

    my ($l) = $w->wait_for_outcome(ce_id => $skip->{ce_id},
                                   result => 'skipped');
    ok($l, 'the other type: result=skipped') or diag($w->log_tail);
    ok($w->wait_for_outcome(ce_id => $take->{ce_id}, result => 'done'),
       'the handled type: result=done');
    CheckoutWorker::ok_wait('both acknowledged', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    my @r = $rx->requests;
    is_deeply([map { $_->{headers}{'ce-id'} } @r], [$take->{ce_id}],
              'only the handled type reached the receiver');
});

CheckoutWorker::scenario('retry then success' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'retry',
        groups => [receipt => { url => $rx->url('/rx'),
                                'max-attempts' => 5 }]);
    # call 1: slow then 503; call 2: 503; call 3: slow then 200
    my $ev = CheckoutWorker::add_event(
        rx => { flaky => 2, slow => 1000, slow_on => [1, 3] });

    $rx->wait_for_requests(1, 15);
    is(CheckoutWorker::state_of($ev->{ce_id})->{receipt}, 'pending',
       'state pending during the first attempt');
    $rx->wait_for_requests(3, 15);
    is(CheckoutWorker::state_of($ev->{ce_id})->{receipt}, 'retrying',
       'state retrying during a retry');

    my @done = $w->wait_for_outcome(ce_id => $ev->{ce_id}, result => 'done');
    ok(@done, 'done in the end');
    my @lines = ev_lines($w, $ev);
    is_deeply([map { "$_->{attempt}:$_->{result}:" . ($_->{status} // '') }
               @lines],
              ['1:retry:503', '2:retry:503', '3:done:200'],
              'log: attempts 1 and 2 retry (503), attempt 3 done')
        or diag(join "\n", map { $_->{_raw} } @lines);
    for my $l (grep { $_->{result} eq 'retry' } @lines) {
        like($l->{next_ms} // '', qr/^\d+$/, "attempt $l->{attempt}: next_ms");
        ok(defined $l->{error} && length $l->{error},
           "attempt $l->{attempt}: error=" . ($l->{error} // ''));
    }
    my @r = $rx->requests;
    is(scalar @r, 3, 'three requests');
    # Full jitter: the delay after attempt n is in [0, min(cap, base*2^(n-1))]
    # (base 50ms, cap 200ms), and the retry never comes before it.
    for my $n (1, 2) {
        my ($l) = grep { $_->{attempt} == $n } @lines;
        my $next = $l ? $l->{next_ms} // -1 : -1;
        ok($next >= 0 && $next <= 50 * 2 ** ($n - 1),
           "attempt $n: next_ms $next within the backoff ceiling");
        ok(@r > $n && defined $r[$n - 1]{reply_time}
           && $r[$n]{time} >= $r[$n - 1]{reply_time} + $next / 1000 - 0.005,
           "attempt " . ($n + 1) . " came no earlier than next_ms after "
           . "the reply");
    }
    is_deeply([map { $_->{headers}{'idempotency-key'} } @r],
              [("receipt:$ev->{ce_id}") x 3],
              'the same Idempotency-Key on every attempt');
    is_deeply([map { $_->{status} } @r], [503, 503, 200],
              'the receiver answered 503, 503, 200');
    is(CheckoutWorker::state_of($ev->{ce_id})->{receipt}, 'done',
       'state done');
    is(CheckoutRedis::cmd('ZCARD', 'checkout:worker:retry:receipt'), 0,
       'the retry schedule is empty');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    is(CheckoutRedis::xlen($DLQ), 0, 'no dead letter');
});

CheckoutWorker::scenario('retries exhausted: dead letter' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'exhaust',
        groups => [receipt => { url => $rx->url('/rx'),
                                'max-attempts' => 3 }]);
    my $ev = CheckoutWorker::add_event(rx => { status => 503 });
    # retried statuses: 408, 429, 5xx
    my @more = map { CheckoutWorker::add_event(rx => { status => $_ }) }
               408, 429, 500, 504;

    for my $e ($ev, @more) {
        ok($w->wait_for_outcome(ce_id => $e->{ce_id}, result => 'dead',
                                _timeout => 20),
           "status " . CheckoutWorker::status_of($e) . ": dead in the end");
        is(scalar CheckoutWorker::requests_for($rx, $e->{ce_id}), 3,
           "status " . CheckoutWorker::status_of($e)
           . ": delivered 3 times (max-attempts)");
    }
    my ($last) = ev_lines($w, $ev, result => 'dead');
    is($last && $last->{attempt}, 3, 'log: the dead line is attempt=3');

    my $dl = dead_letters_by_original()->{ $ev->{entry} };
    ok($dl, 'a dead letter with original_id = the entry id') or return;
    my @orig = @{ $ev->{fields} };
    my @names = map { $orig[2 * $_] } 0 .. $#orig / 2;
    my @got = @{ $dl->[2] };
    my @got_names = map { $got[2 * $_] } 0 .. $#got / 2;
    is_deeply(\@got_names, [@names, qw(group stream error attempts
                                       original_id failed_at consumer)],
              'DLQ fields: the original ones in order, then group, stream, '
              . 'error, attempts, original_id, failed_at, consumer');
    is_deeply([@got[0 .. $#orig]], \@orig, 'DLQ: the original values');
    my $f = $dl->[1];
    is($f->{group}, 'receipt', 'DLQ: group');
    is($f->{stream}, $S, 'DLQ: stream');
    like($f->{error} // '', qr/503/, "DLQ: error names the status: "
                                     . ($f->{error} // ''));
    is($f->{attempts}, 3, 'DLQ: attempts');
    like($f->{failed_at} // '', $TS_RE, 'DLQ: failed_at RFC 3339 UTC ms');
    my $t = CheckoutWorker::parse_time($f->{failed_at});
    ok(defined $t && abs(time - $t) < 120, 'DLQ: failed_at is now');
    is($f->{consumer}, 'exhaust', 'DLQ: consumer');

    is(CheckoutWorker::state_of($ev->{ce_id})->{receipt}, 'dead',
       'state dead');
    CheckoutWorker::ok_wait('acknowledged: nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    is(CheckoutRedis::cmd('EXISTS',
                          CheckoutWorker::done_key('receipt', $ev->{ce_id})),
       0, 'no done record');
    is(CheckoutRedis::xlen($DLQ), 5, 'five dead letters in all');
});

CheckoutWorker::scenario('4xx and 3xx: dead at once' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'fatal',
        groups => [receipt => { url => $rx->url('/rx'),
                                'max-attempts' => 5 }]);
    my @evs = map { CheckoutWorker::add_event(rx => { status => $_ }) }
              400, 404, 409, 422, 301, 302, 307;
    for my $e (@evs) {
        my $st = CheckoutWorker::status_of($e);
        my ($l) = $w->wait_for_outcome(ce_id => $e->{ce_id}, result => 'dead');
        ok($l, "$st: result=dead") or next;
        is($l->{attempt}, 1, "$st: after 1 attempt");
        is(scalar CheckoutWorker::requests_for($rx, $e->{ce_id}), 1,
           "$st: one request");
    }
    my $by = dead_letters_by_original();
    for my $e (@evs) {
        my $st = CheckoutWorker::status_of($e);
        my $dl = $by->{ $e->{entry} };
        ok($dl, "$st: dead letter") or next;
        is($dl->[1]{attempts}, 1, "$st: DLQ attempts=1");
        like($dl->[1]{error} // '', qr/\b$st\b/, "$st: DLQ error names it: "
                                               . ($dl->[1]{error} // ''));
        is(CheckoutWorker::state_of($e->{ce_id})->{receipt}, 'dead',
           "$st: state dead");
    }
    is($rx->count('/ok'), 0, 'redirects are not followed');
    is($rx->count, scalar @evs, 'no retry at all');
    is(scalar $w->outcomes(result => 'retry'), 0, 'no result=retry line');
});

CheckoutWorker::scenario('bad schema version and malformed events' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'malformed',
        groups => [receipt => { url => $rx->url('/ok'),
                                'schema-versions' => '1 3' }]);
    my @cases = (
        ['ce_schemaversion 2', { ce_schemaversion => '2' },
         qr/^unsupported_schema_version: 2$/],
        ['ce_schemaversion 2.1', { ce_schemaversion => '2.1' },
         qr/^unsupported_schema_version: 2\.1$/],
        ['ce_schemaversion abc', { ce_schemaversion => 'abc' },
         qr/^(?:malformed_event: .*ce_schemaversion
               |unsupported_schema_version: abc)/x],
        ['no ce_schemaversion', { ce_schemaversion => undef },
         qr/^malformed_event: .*ce_schemaversion/],
        ['ce_specversion 0.3', { ce_specversion => '0.3' },
         qr/^malformed_event: .*ce_specversion/],
        ['no ce_id', { ce_id => undef }, qr/^malformed_event: .*ce_id/],
        ['empty ce_id', { ce_id => '' }, qr/^malformed_event: .*ce_id/],
        ['no ce_type', { ce_type => undef }, qr/^malformed_event: .*ce_type/],
        ['empty ce_source', { ce_source => '' },
         qr/^malformed_event: .*ce_source/],
        ['no ce_subject', { ce_subject => undef },
         qr/^malformed_event: .*ce_subject/],
        ['no data', { data => undef }, qr/^malformed_event: .*data/],
        ['data not JSON', { data => '{"checkoutId": oops' },
         qr/^malformed_event: .*data/],
        ['data not UTF-8', { data => qq{{"name":"\xff\xfe"}} },
         qr/^malformed_event: .*data/],
    );
    my @bad;
    for my $c (@cases) {
        push @bad, [ $c, CheckoutWorker::add_event(fields => $c->[1]) ];
    }
    my $v13 = CheckoutWorker::add_event(
        fields => { ce_schemaversion => '1.7' });
    my $v3 = CheckoutWorker::add_event(fields => { ce_schemaversion => '3' });
    my $last = CheckoutWorker::add_event();

    ok($w->wait_for_outcome(ce_id => $last->{ce_id}, result => 'done',
                            _timeout => 20),
       'a good event after them is delivered');
    CheckoutWorker::ok_wait('every bad event is dead-lettered', sub {
        CheckoutRedis::xlen($DLQ) >= @bad;
    });
    my $by = dead_letters_by_original();
    for my $b (@bad) {
        my ($c, $e) = @$b;
        my $dl = $by->{ $e->{entry} };
        ok($dl, "$c->[0]: dead letter") or next;
        like($dl->[1]{error} // '', $c->[2],
             "$c->[0]: error " . ($dl->[1]{error} // '<none>'));
        is($dl->[1]{attempts}, 1, "$c->[0]: attempts 1 (never retried)");
        is($dl->[1]{group}, 'receipt', "$c->[0]: group");
        my ($l) = $w->outcomes(id => $e->{entry}, result => 'dead');
        ok($l, "$c->[0]: log result=dead");
    }
    is(CheckoutWorker::state_of($bad[0][1]{ce_id})->{receipt}, 'dead',
       'unsupported version: state dead');
    my %delivered = map { ($_->{headers}{'ce-id'} => 1) } $rx->requests;
    is_deeply(\%delivered, { map { ($_->{ce_id} => 1) } $v13, $v3, $last },
              'only the good events (1.7 and 3 accepted) reached the receiver');
    is(scalar $w->outcomes(result => 'retry'), 0, 'nothing retried');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
});

CheckoutWorker::scenario('timeouts and refused connections: retried' => sub {
    my $rx = CheckoutWorker::receiver();
    my $closed = CheckoutRedis::free_port();
    my $w = CheckoutWorker->start(name => 'timeouts',
                                  global => ['dead-letter-stream' => 'ops:dead'],
                                  groups => [
        slow => { stream => 's:timeout', url => $rx->url('/hang'),
                  timeout => '300ms', 'min-idle' => '2s',
                  'max-attempts' => 2 },
        refused => { stream => 's:refused',
                     url => "http://127.0.0.1:$closed/x",
                     'max-attempts' => 2 },
    ]);
    my $hang = CheckoutWorker::add_event(stream => 's:timeout');
    my $ref = CheckoutWorker::add_event(stream => 's:refused');

    my ($l) = $w->wait_for_outcome(ce_id => $hang->{ce_id}, result => 'dead',
                                   _timeout => 20);
    ok($l, 'a delivery that times out each time ends dead');
    my @lines = ev_lines($w, $hang);
    is_deeply([map { "$_->{attempt}:$_->{result}" } @lines],
              ['1:retry', '2:dead'], 'retried once, then dead')
        or diag(join "\n", map { $_->{_raw} } @lines);
    like($lines[0]{error} // '', qr/time/i,
         'the error says timeout: ' . ($lines[0]{error} // ''));
    my @r = $rx->wait_for_replies(2, 10);
    is(scalar @r, 2, 'two requests');
    is_deeply([map { $_->{outcome} } @r], ['hangup', 'hangup'],
              'the worker gave up on both (closed the connection)');
    ok($r[0]{reply_time} - $r[0]{time} < 10,
       'the first gave up well before 10 s');

    ($l) = $w->wait_for_outcome(ce_id => $ref->{ce_id}, result => 'dead',
                                _timeout => 20);
    ok($l, 'connection refused: dead after max-attempts');
    @lines = ev_lines($w, $ref);
    is_deeply([map { "$_->{attempt}:$_->{result}" } @lines],
              ['1:retry', '2:dead'], 'connection refused: retried');
    like($lines[0]{error} // '', qr/connect|refused/i,
         'the error says so: ' . ($lines[0]{error} // ''));
    is(CheckoutRedis::xlen($DLQ), 0, 'nothing in the default DLQ');
    my $dl = dead_letters_by_original('s:refused', 'ops:dead')
             ->{ $ref->{entry} };
    ok($dl, 'a dead letter of stream s:refused in dead-letter-stream '
            . 'ops:dead');
    is($dl && $dl->[1]{ce_id}, $ref->{ce_id}, 'DLQ: the refused event');
    $dl = dead_letters_by_original('s:timeout', 'ops:dead')
          ->{ $hang->{entry} };
    is($dl && $dl->[1]{ce_id}, $hang->{ce_id},
       'DLQ: the timed-out event, stream s:timeout');
});

CheckoutWorker::scenario('an entry of more than 1024 fields: dead-lettered '
                         . 'with the worker\'s fields only' => sub {
    my $rx = CheckoutWorker::receiver();
    my $w = CheckoutWorker->start(name => 'manyfields',
        groups => [receipt => { url => $rx->url('/ok') }]);
    # add_event writes 9 fields (ce_*, content-type, data): pad to the total
    my $with = sub {
        my ($total) = @_;
        my $e = CheckoutWorker::add_event(
            extra => [ map { ("x$_" => "v$_") } 1 .. $total - 9 ]);
        my $r = CheckoutRedis::cmd('XRANGE', $S, $e->{entry}, $e->{entry});
        is(scalar(@{ $r->[0][1] }) / 2, $total, "an entry of $total fields");
        return $e;
    };
    my %ev = map { ($_ => $with->($_)) } 1024, 1025, 5000;
    my $last = CheckoutWorker::add_event();
    ok($w->wait_for_outcome(ce_id => $last->{ce_id}, result => 'done',
                            _timeout => 20),
       'a normal event after them is delivered: the worker goes on')
        or diag($w->log_tail);
    ok($w->wait_for_outcome(ce_id => $ev{1024}{ce_id}, result => 'done'),
       '1024 fields: delivered, done');

    my $error = 'malformed_event: more than 1024 fields';
    for my $n (1025, 5000) {
        my $e = $ev{$n};
        my ($l) = $w->wait_for_outcome(id => $e->{entry}, result => 'dead');
        ok($l, "$n fields: result=dead") or next;
        is($l->{error}, $error, "$n fields: log error=\"$error\"");
        is($l->{attempt}, 1, "$n fields: attempt 1");
        my $dl = CheckoutWorker::dead_letter_of($e->{entry});
        ok($dl, "$n fields: a dead letter") or next;
        my @names = @{ $dl->[2] }[ grep { $_ % 2 == 0 } 0 .. $#{ $dl->[2] } ];
        is_deeply(\@names, [qw(group stream error attempts original_id
                               failed_at consumer)],
                  "$n fields: the dead letter has the worker's fields only");
        is($dl->[1]{error}, $error, "$n fields: DLQ error");
        is($dl->[1]{group}, 'receipt', "$n fields: DLQ group");
        is($dl->[1]{stream}, $S, "$n fields: DLQ stream");
        is($dl->[1]{attempts}, 1, "$n fields: DLQ attempts 1");
        is($dl->[1]{consumer}, 'manyfields', "$n fields: DLQ consumer");
        like($dl->[1]{failed_at} // '', $TS_RE, "$n fields: DLQ failed_at");
        is(scalar CheckoutWorker::requests_for($rx, $e->{ce_id}), 0,
           "$n fields: never delivered");
    }
    is(CheckoutRedis::xlen($DLQ), 2, 'two dead letters');
    is(scalar $w->outcomes(result => 'retry'), 0, 'nothing retried');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    ok($w->running, 'the worker still runs');
});

CheckoutWorker::finish();
