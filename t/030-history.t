# The history checker (t/lib/CheckoutHistory.pm) on histories written by
# hand: a sound one has no problem, and each lost, duplicated or unexpected
# item is reported, once and by name, while what the worker may repeat
# (a retry after a 5xx or a timeout, a redelivery across a crash) is not.
# No server is started: problems_in() is the check itself.
#
#   prove -It/lib t/030-history.t

use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use CheckoutHistory ();

# As new() takes them, less the receivers, which only snapshot() reads.
my @Groups = (
    receipt   => { types => ['OrderConfirmed'], timeout => 2 },
    analytics => { timeout => 2 },
    review    => { types => ['CheckoutPendingReview'] },
);

my $Seq = 0;

sub entry {
    my ($ce, $type, %more) = @_;
    my ($subject) = $ce =~ /^([^:]+)/;
    return [ '1700000000000-' . $Seq++,
             { ce_id => $ce, ce_type => $type, ce_subject => $subject,
               %more } ];
}

# A delivery of $ce to $group at time $t, answered $status $took s later.
sub delivery {
    my ($group, $ce, $type, $status, $t, $took) = @_;
    return { time => $t, reply_time => $t + ($took // 0.01),
             status => $status, outcome => 'reply',
             headers => { 'ce-id' => $ce, 'ce-type' => $type,
                          'idempotency-key' => "$group:$ce" } };
}

# A sound history: a confirmed checkout delivered to receipt (after a 503)
# and analytics; a requires_action one with nothing; a pending_review one
# the review group settled with an emitted OrderConfirmed.
sub sound {
    return {
        groups => [@Groups],
        replies => [
            { id => 'chk_A', outcome => 'confirmed', status => 201 },
            { id => 'chk_B', outcome => 'requires_action', status => 202 },
            { id => 'chk_C', outcome => 'pending_review', status => 202 },
            { id => 'chk_A', outcome => 'confirmed', status => 201 },
        ],
        entries => [ entry('chk_A', 'OrderConfirmed'),
                     entry('chk_C', 'CheckoutPendingReview'),
                     entry('chk_C:review:1', 'OrderConfirmed') ],
        dead => [],
        deliveries => {
            receipt => [ delivery(receipt => 'chk_A', 'OrderConfirmed',
                                  503, 10),
                         delivery(receipt => 'chk_A', 'OrderConfirmed',
                                  200, 10.2),
                         delivery(receipt => 'chk_C:review:1',
                                  'OrderConfirmed', 200, 11) ],
            analytics => [ delivery(analytics => 'chk_A', 'OrderConfirmed',
                                    200, 10),
                           delivery(analytics => 'chk_C',
                                    'CheckoutPendingReview', 200, 10.5),
                           delivery(analytics => 'chk_C:review:1',
                                    'OrderConfirmed', 200, 11) ],
            review => [ delivery(review => 'chk_C', 'CheckoutPendingReview',
                                 200, 10.5) ],
        },
    };
}

# $change alters a sound history and returns the problems it must have.
sub reports {
    my ($desc, $change) = @_;
    my $h = sound();
    my @want = $change->($h);
    is_deeply([ CheckoutHistory::problems_in($h) ], \@want, $desc);
}

# The ids of a history's entries, by ce_id.
sub eid {
    my ($h, $ce) = @_;
    my ($e) = grep { $_->[1]{ce_id} eq $ce } @{ $h->{entries} };
    return $e->[0];
}

sub drop_deliveries {
    my ($h, $ce, @groups) = @_;
    $h->{deliveries}{$_} = [ grep { $_->{headers}{'ce-id'} ne $ce }
                             @{ $h->{deliveries}{$_} } ] for @groups;
}

is_deeply([ CheckoutHistory::problems_in(sound()) ], [],
          'a sound history: no problem (a retry after a 503 and a replayed '
          . 'reply included)');

# ---- lost -------------------------------------------------------------------

reports('a confirmed reply without its entry: lost', sub {
    my ($h) = @_;
    shift @{ $h->{entries} };
    drop_deliveries($h, 'chk_A', qw(receipt analytics));
    return 'lost: chk_A was told confirmed, which owes OrderConfirmed, and '
           . 'the stream has no entry for it';
});

reports('an entry its group never got: lost', sub {
    my ($h) = @_;
    drop_deliveries($h, 'chk_C:review:1', 'receipt');
    return 'lost: entry ' . eid($h, 'chk_C:review:1') . ' (OrderConfirmed '
           . 'chk_C:review:1) never reached receipt: no 2xx from its '
           . 'receiver, no dead letter';
});

reports('an entry its group answered only 503 to: lost', sub {
    my ($h) = @_;
    $_->{status} = 503 for @{ $h->{deliveries}{receipt} }[0, 1];
    return 'lost: entry ' . eid($h, 'chk_A') . ' (OrderConfirmed chk_A) '
           . 'never reached receipt: no 2xx from its receiver, no dead letter';
});

reports('the same, dead-lettered for that group: not lost', sub {
    my ($h) = @_;
    $_->{status} = 503 for @{ $h->{deliveries}{receipt} }[0, 1];
    $h->{dead} = [ [ '1700000000001-0', { group => 'receipt',
                                          ce_id => 'chk_A' } ] ];
    return;
});

reports('dead-lettered for another group: still lost', sub {
    my ($h) = @_;
    $_->{status} = 503 for @{ $h->{deliveries}{receipt} }[0, 1];
    $h->{dead} = [ [ '1700000000001-0', { group => 'analytics',
                                          ce_id => 'chk_A' } ] ];
    return 'lost: entry ' . eid($h, 'chk_A') . ' (OrderConfirmed chk_A) '
           . 'never reached receipt: no 2xx from its receiver, no dead letter';
});

# ---- duplicated -------------------------------------------------------------

reports('two entries with one ce_id: duplicated', sub {
    my ($h) = @_;
    my $orig = eid($h, 'chk_A');
    my $copy = entry('chk_A', 'OrderConfirmed');
    push @{ $h->{entries} }, $copy;
    return "duplicated: chk_A is in the stream 2 times: entries $orig, "
           . $copy->[0];
});

reports('a REPLAY\'s copy (replay_group): not duplicated', sub {
    my ($h) = @_;
    push @{ $h->{entries} }, entry('chk_A', 'OrderConfirmed',
                                   replay_group => 'receipt');
    return;
});

reports('a receiver that answered 2xx twice for one key: duplicated', sub {
    my ($h) = @_;
    $h->{deliveries}{receipt}[0]{status} = 200;
    return 'duplicated: receipt answered 2xx 2 times for Idempotency-Key '
           . 'receipt:chk_A';
});

reports('a 2xx after the group\'s timeout, then a 2xx: not duplicated',
        sub {
    my ($h) = @_;
    my $first = $h->{deliveries}{receipt}[0];
    $first->{status} = 200;
    $first->{reply_time} = $first->{time} + 2.5;
    $h->{deliveries}{receipt}[1]{time} = $first->{time} + 2.6;
    return;
});

reports('two 2xx with a disruption between them: not duplicated', sub {
    my ($h) = @_;
    $h->{deliveries}{receipt}[0]{status} = 200;
    $h->{disruptions} = [ 10.1 ];
    return;
});

reports('two 2xx with a disruption before both: duplicated', sub {
    my ($h) = @_;
    $h->{deliveries}{receipt}[0]{status} = 200;
    $h->{disruptions} = [ 9 ];
    return 'duplicated: receipt answered 2xx 2 times for Idempotency-Key '
           . 'receipt:chk_A';
});

# ---- unexpected -------------------------------------------------------------

reports('OrderConfirmed for a checkout the client was told declined', sub {
    my ($h) = @_;
    for my $r (@{ $h->{replies} }[0, 3]) {
        @$r{qw(outcome status)} = ('declined', 402);
    }
    return 'unexpected: entry ' . eid($h, 'chk_A') . ' (OrderConfirmed '
           . 'chk_A): the client was told declined, which owes '
           . 'CheckoutDeclined';
});

reports('an entry for a requires_action checkout', sub {
    my ($h) = @_;
    my $e = entry('chk_B', 'OrderConfirmed');
    push @{ $h->{entries} }, $e;
    push @{ $h->{deliveries}{$_} },
        delivery($_ => 'chk_B', 'OrderConfirmed', 200, 12)
        for qw(receipt analytics);
    return "unexpected: entry $e->[0] (OrderConfirmed chk_B): the client was "
           . 'told requires_action, which owes no event';
});

reports('a delivery for a failed checkout, with no entry', sub {
    my ($h) = @_;
    push @{ $h->{replies} }, { id => 'chk_F', outcome => 'failed',
                               status => 503 };
    push @{ $h->{deliveries}{analytics} },
        delivery(analytics => 'chk_F', 'OrderConfirmed', 200, 12);
    return 'unexpected: analytics got chk_F (OrderConfirmed): the client '
           . 'was told failed, which owes no event';
});

reports('a delivery to a group whose types exclude it', sub {
    my ($h) = @_;
    push @{ $h->{deliveries}{review} },
        delivery(review => 'chk_A', 'OrderConfirmed', 200, 12);
    return 'unexpected: review got chk_A (OrderConfirmed), which its types '
           . '(CheckoutPendingReview) exclude';
});

reports('a delivery with another group\'s Idempotency-Key', sub {
    my ($h) = @_;
    $h->{deliveries}{analytics}[0]{headers}{'idempotency-key'}
        = 'receipt:chk_A';
    return 'unexpected: analytics got chk_A (OrderConfirmed) with '
           . "Idempotency-Key 'receipt:chk_A', not 'analytics:chk_A'";
});

reports('a delivery of an event not in the stream', sub {
    my ($h) = @_;
    push @{ $h->{deliveries}{analytics} },
        delivery(analytics => 'chk_X', 'OrderConfirmed', 200, 12);
    return 'unexpected: analytics got chk_X (OrderConfirmed), which is not '
           . 'in the stream';
});

reports('an entry no client was told of, not emitted for an entry', sub {
    my ($h) = @_;
    my $e = entry('chk_Z:review:1', 'OrderConfirmed');
    push @{ $h->{entries} }, $e;
    push @{ $h->{deliveries}{$_} },
        delivery($_ => 'chk_Z:review:1', 'OrderConfirmed', 200, 12)
        for qw(receipt analytics);
    return "unexpected: entry $e->[0] (OrderConfirmed chk_Z:review:1): no "
           . 'client was told of chk_Z:review:1, and it was not emitted for '
           . 'an entry';
});

reports('an emitted OrderConfirmed for a declined checkout', sub {
    my ($h) = @_;
    push @{ $h->{replies} }, { id => 'chk_D', outcome => 'declined',
                               status => 402 };
    my $e = entry('chk_D:review:1', 'OrderConfirmed');
    push @{ $h->{entries} }, entry('chk_D', 'CheckoutDeclined'), $e;
    push @{ $h->{deliveries}{analytics} },
        delivery(analytics => 'chk_D', 'CheckoutDeclined', 200, 12),
        delivery(analytics => 'chk_D:review:1', 'OrderConfirmed', 200, 12);
    push @{ $h->{deliveries}{receipt} },
        delivery(receipt => 'chk_D:review:1', 'OrderConfirmed', 200, 12);
    return "unexpected: entry $e->[0] (OrderConfirmed chk_D:review:1): "
           . 'emitted for chk_D, whose client was told declined';
});

reports('two replies of one checkout that disagree', sub {
    my ($h) = @_;
    @{ $h->{replies}[3] }{qw(outcome status)} = ('failed', 503);
    return 'unexpected: chk_A: the client was told confirmed, then failed';
});

reports('a reply whose HTTP status is not its outcome\'s', sub {
    my ($h) = @_;
    $h->{replies}[1]{status} = 200;
    return 'unexpected: chk_B: the client was told requires_action with '
           . 'HTTP 200';
});

reports('one of each at once: each reported, lost first', sub {
    my ($h) = @_;
    drop_deliveries($h, 'chk_C:review:1', 'receipt');
    $h->{deliveries}{receipt}[0]{status} = 200;
    push @{ $h->{deliveries}{review} },
        delivery(review => 'chk_A', 'OrderConfirmed', 200, 12);
    return ('lost: entry ' . eid($h, 'chk_C:review:1') . ' (OrderConfirmed '
            . 'chk_C:review:1) never reached receipt: no 2xx from its '
            . 'receiver, no dead letter',
            'duplicated: receipt answered 2xx 2 times for Idempotency-Key '
            . 'receipt:chk_A',
            'unexpected: review got chk_A (OrderConfirmed), which its types '
            . '(CheckoutPendingReview) exclude');
});

done_testing();
