package CheckoutHistory;

# A history checker for the suites that run checkouts through the whole
# system (t/030-end-to-end.t) and for the fault suites after it: from what
# the clients were told, what is in the event stream and the dead-letter
# stream, and what each group's receiver got, it lists what went wrong as
# human-readable problems, each starting with its kind:
#
#   lost:        a reply that owes an event, without its entry; an entry a
#                group takes that never reached the group's receiver with a
#                2xx, nor the dead-letter stream for that group
#   duplicated:  two entries with one ce_id (a REPLAY's copy, which names its
#                replay_group, is not one); a receiver that answered 2xx
#                twice for one Idempotency-Key. Repeats the worker may make
#                are not complained about: after a non-2xx, after a 2xx it
#                cannot have seen in time (answered later than the group's
#                timeout, less a tenth), and across a disruption() (a worker
#                killed after the receiver's 2xx, Redis restarted before the
#                acknowledgement)
#   unexpected:  an entry whose type contradicts what the client was told
#                (OrderConfirmed for a declined checkout), for an outcome
#                that owes none, or that is neither a told checkout's nor an
#                event emitted for an entry ("<ce_id>:<group>:<n>"); a
#                delivery of an event not in the stream, of a type the
#                group's types exclude, for a checkout that owes no event,
#                or with an Idempotency-Key other than <group>:<ce-id>; two
#                replies of one checkout that disagree; a reply whose HTTP
#                status is not its outcome's (201 confirmed, 202
#                requires_action and pending_review, 4xx declined, 5xx
#                failed)
#
#     use CheckoutHistory ();
#     my $h = CheckoutHistory->new(groups => [
#         receipt   => { rx => $rx1, types => ['OrderConfirmed'] },
#         analytics => { rx => $rx2, path => '/ok', timeout => 2 },
#     ]);
#     $h->record(id => $doc->{checkoutId}, outcome => $doc->{status},
#                status => 201);            # or $h->record_response($res)
#     $w->kill9; $h->disruption;            # 2xx may be repeated across it
#     $h->settle(20) or diag('the worker did not finish in 20 s');
#     my @problems = $h->check_ok('no event lost, duplicated or unexpected');
#
# new(%o):
#   groups   [NAME => {rx, path, types, timeout}, ...]: rx the group's
#            CheckoutReceiver; path a request-path prefix when groups share
#            one receiver; types an array of the ce_types the group takes
#            (absent: every type); timeout the group's delivery timeout in
#            seconds (absent: every 2xx reached the worker)
#   stream   the event stream (checkout:events)
#   dlq      the dead-letter stream (checkout:events:dlq)
#   events   {outcome => ce_type} for the outcomes that owe an event (the
#            module's checkout_event defaults); any other outcome owes none
# Methods:
#   record(id => ID, outcome => STATUS, status => HTTP)   what a client was
#            told; a replayed reply may be recorded again
#   record_response($res)   the same from a CheckoutTest::http_request()
#            reply (nothing is recorded for a reply without a checkoutId)
#   replies()               what was recorded, in order
#   disruption()            now is a crash or restart (see duplicated)
#   snapshot()              the history as problems_in() takes it, read now
#   problems()              problems_in(snapshot())
#   settle($timeout)        waits (bounded, polling) until nothing is lost,
#            every group has read and acknowledged the whole stream and
#            every receiver has answered what it got; true if it did
#   check_ok($desc)         a Test::More ok() that there is no problem,
#            the problems as diag; returns them
# Function:
#   problems_in(\%history)  the check itself, on a history given as data:
#            replies [{id, outcome, status}], entries and dead
#            [[entry id, {field => value}]], deliveries {group => [request
#            as CheckoutReceiver->requests gives it]}, groups (as new()),
#            events, disruptions [epoch seconds]; t/030-history.t feeds it
#            histories by hand

use strict;
use warnings;

use Carp qw(croak);
use JSON::PP ();
use Test::More ();
use Time::HiRes qw(time sleep);

use CheckoutRedis ();

our %DefaultEvents = (
    confirmed      => 'OrderConfirmed',
    pending_review => 'CheckoutPendingReview',
    declined       => 'CheckoutDeclined',
);

# The HTTP status of each outcome's reply.
my %StatusOf = (
    confirmed       => qr/^201$/,
    requires_action => qr/^202$/,
    pending_review  => qr/^202$/,
    declined        => qr/^4\d\d$/,
    failed          => qr/^5\d\d$/,
);

# An emitted event's id: "<parent ce_id>:<group>:<n>".
my $EMITTED_RE = qr/^(.+):([^:]+):([1-9]\d*)$/;

sub new {
    my ($class, %o) = @_;
    my @unknown = grep { !/^(?:groups|stream|dlq|events)$/ } keys %o;
    croak "CheckoutHistory->new: unknown option(s) @unknown" if @unknown;
    my @groups = @{ $o{groups} || [] };
    croak "CheckoutHistory->new: groups is a list of NAME => {...}"
        if @groups % 2;
    for (my $i = 0; $i < @groups; $i += 2) {
        croak "CheckoutHistory->new: group $groups[$i] has no rx"
            unless ref $groups[$i + 1] eq 'HASH' && $groups[$i + 1]{rx};
    }
    return bless {
        groups      => \@groups,
        stream      => $o{stream} // 'checkout:events',
        dlq         => $o{dlq} // 'checkout:events:dlq',
        events      => $o{events} // { %DefaultEvents },
        replies     => [],
        disruptions => [],
    }, $class;
}

sub record {
    my ($self, %r) = @_;
    croak "CheckoutHistory::record: id and outcome are needed"
        unless defined $r{id} && defined $r{outcome};
    push @{ $self->{replies} }, { id => $r{id}, outcome => $r{outcome},
                                  status => $r{status} };
}

sub record_response {
    my ($self, $res) = @_;
    my $doc = eval { JSON::PP->new->utf8->decode($res->{body} // '') };
    return unless ref $doc eq 'HASH' && defined $doc->{checkoutId};
    $self->record(id => $doc->{checkoutId}, outcome => $doc->{status},
                  status => $res->{status});
}

sub replies { @{ $_[0]{replies} } }

sub disruption { push @{ $_[0]{disruptions} }, time }

sub snapshot {
    my ($self) = @_;
    my %deliveries;
    my @g = @{ $self->{groups} };
    while (my ($name, $g) = splice @g, 0, 2) {
        $deliveries{$name} = [ $g->{rx}->requests($g->{path}) ];
    }
    return {
        replies     => [ $self->replies ],
        entries     => _entries($self->{stream}),
        dead        => _entries($self->{dlq}),
        deliveries  => \%deliveries,
        groups      => $self->{groups},
        events      => $self->{events},
        disruptions => $self->{disruptions},
    };
}

# A stream's entries, [] while it does not exist.
sub _entries { [ CheckoutRedis::xrange($_[0]) ] }

sub problems { problems_in($_[0]->snapshot) }

sub settle {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 20);
    while (1) {
        my $s = $self->snapshot;
        return 1 if $self->_idle($s)
                    && !grep { /^lost: / } problems_in($s);
        return 0 if time >= $deadline;
        sleep 0.05;
    }
}

# Every group has read the whole stream and has nothing pending (retries
# included), and every request a receiver got has been answered.
sub _idle {
    my ($self, $s) = @_;
    for my $reqs (values %{ $s->{deliveries} }) {
        return 0 if grep { !$_->{outcome} } @$reqs;
    }
    my ($info, $err) = CheckoutRedis::cmd_err('XINFO', 'GROUPS',
                                              $self->{stream});
    return !@{ $s->{entries} } if $err;          # no stream yet
    my %read = map { my %g = @$_; ($g{name} => \%g) } @$info;
    my $last = @{ $s->{entries} } ? $s->{entries}[-1][0] : undef;
    my @g = @{ $self->{groups} };
    while (my ($name) = splice @g, 0, 2) {
        my $g = $read{$name} or return 0;
        return 0 if $g->{pending};
        # lag is nil after some deletions: the last id read tells then
        my $behind = defined $g->{lag} ? $g->{lag}
                   : defined $last && $g->{'last-delivered-id'} ne $last;
        return 0 if $behind;
    }
    return 1;
}

sub check_ok {
    my ($self, $desc) = @_;
    my @p = $self->problems;
    Test::More::ok(!@p, $desc) or Test::More::diag(join "\n", @p);
    return @p;
}

# ---- the check ---------------------------------------------------------------

sub problems_in {
    my ($h) = @_;
    my %events = %{ $h->{events} // \%DefaultEvents };
    my %outcome_of_type = reverse %events;
    my @groups = @{ $h->{groups} || [] };
    my (@lost, @dup, @unexpected);

    my %told;
    for my $r (@{ $h->{replies} || [] }) {
        my $was = $told{ $r->{id} };
        push @unexpected, "unexpected: $r->{id}: the client was told "
                          . "$was, then $r->{outcome}"
            if defined $was && $was ne $r->{outcome};
        $told{ $r->{id} } //= $r->{outcome};
        my $want = $StatusOf{ $r->{outcome} };
        push @unexpected, "unexpected: $r->{id}: the client was told "
                          . "$r->{outcome} with HTTP $r->{status}"
            if defined $r->{status} && $want && $r->{status} !~ $want;
    }

    my %by_ce;
    for my $e (@{ $h->{entries} || [] }) {
        push @{ $by_ce{ $e->[1]{ce_id} // '' } }, $e;
    }
    for my $ce (sort keys %by_ce) {
        my @firsts = grep { !defined $_->[1]{replay_group} } @{ $by_ce{$ce} };
        push @dup, "duplicated: $ce is in the stream " . @firsts
                   . " times: entries " . join(', ', map { $_->[0] } @firsts)
            if @firsts > 1;
    }

    for my $id (sort keys %told) {
        my $owed = $events{ $told{$id} } or next;
        push @lost, "lost: $id was told $told{$id}, which owes $owed, "
                    . "and the stream has no entry for it"
            unless $by_ce{$id};
    }

    for my $e (@{ $h->{entries} || [] }) {
        my ($eid, $f) = @$e;
        my ($ce, $type) = ($f->{ce_id} // '', $f->{ce_type} // '');
        my $what = "entry $eid ($type $ce)";
        if (defined(my $outcome = $told{$ce})) {
            my $owed = $events{$outcome};
            if (!defined $owed) {
                push @unexpected, "unexpected: $what: the client was told "
                                  . "$outcome, which owes no event";
            } elsif ($type ne $owed) {
                push @unexpected, "unexpected: $what: the client was told "
                                  . "$outcome, which owes $owed";
            }
            next;
        }
        my ($parent) = $ce =~ $EMITTED_RE;
        if (!defined $parent || !$by_ce{$parent}) {
            push @unexpected, "unexpected: $what: no client was told of "
                              . "$ce, and it was not emitted for an entry";
            next;
        }
        # An emitted event settles its checkout: only a pending_review one
        # may end otherwise than its client was told.
        my $subject = $f->{ce_subject} // '';
        my $outcome = $told{$subject};
        my $means = $outcome_of_type{$type};
        push @unexpected, "unexpected: $what: emitted for $subject, whose "
                          . "client was told $outcome"
            if defined $outcome && defined $means && $means ne $outcome
               && $outcome ne 'pending_review';
    }

    my %dead;
    for my $d (@{ $h->{dead} || [] }) {
        $dead{ ($d->[1]{group} // '') . "\0" . ($d->[1]{ce_id} // '') } = 1;
    }
    my @disruptions = sort { $a <=> $b } @{ $h->{disruptions} || [] };

    while (my ($g, $conf) = splice @groups, 0, 2) {
        my %takes = map { ($_ => 1) } @{ $conf->{types} || [] };
        my $takes = sub { !$conf->{types} || $takes{ $_[0] } };
        my $reqs = $h->{deliveries}{$g} || [];
        my (%ok2xx, %counted);
        for my $r (@$reqs) {
            my $hd = $r->{headers} || {};
            my ($ce, $type) = ($hd->{'ce-id'} // '', $hd->{'ce-type'} // '');
            my $key = $hd->{'idempotency-key'} // '';
            my $what = "$g got $ce ($type)";
            push @unexpected, "unexpected: $what with Idempotency-Key "
                              . "'$key', not '$g:$ce'"
                if $key ne "$g:$ce";
            push @unexpected, "unexpected: $what, which its types ("
                              . join(' ', @{ $conf->{types} }) . ") exclude"
                unless $takes->($type);
            if (!$by_ce{$ce}) {
                my $outcome = $told{$ce};
                push @unexpected,
                    defined $outcome && !$events{$outcome}
                    ? "unexpected: $what: the client was told $outcome, "
                      . "which owes no event"
                    : "unexpected: $what, which is not in the stream";
            }
            next unless ($r->{outcome} // '') eq 'reply'
                        && ($r->{status} // 0) =~ /^2\d\d$/;
            $ok2xx{$ce} = 1;
            push @{ $counted{$key} }, $r if _in_time($r, $conf->{timeout});
        }
        for my $key (sort keys %counted) {
            my @s = sort { $a->{time} <=> $b->{time} } @{ $counted{$key} };
            my $n = 1;
            for my $i (1 .. $#s) {
                my ($from, $to) = ($s[$i - 1]{reply_time}, $s[$i]{time});
                $n++ unless grep { $_ >= $from && $_ <= $to } @disruptions;
            }
            push @dup, "duplicated: $g answered 2xx $n times for "
                       . "Idempotency-Key $key"
                if $n > 1;
        }
        for my $e (@{ $h->{entries} || [] }) {
            my ($eid, $f) = @$e;
            my ($ce, $type) = ($f->{ce_id} // '', $f->{ce_type} // '');
            next unless $takes->($type);
            next if defined $f->{replay_group} && $f->{replay_group} ne $g;
            next if $ok2xx{$ce} || $dead{"$g\0$ce"};
            push @lost, "lost: entry $eid ($type $ce) never reached $g: no "
                        . "2xx from its receiver, no dead letter";
        }
    }

    my %seen;
    return grep { !$seen{$_}++ } @lost, @dup, @unexpected;
}

# A 2xx the worker saw before its timeout: written a tenth of the timeout
# early, since the worker's clock starts before the request arrives.
sub _in_time {
    my ($r, $timeout) = @_;
    return 1 unless defined $timeout;
    return ($r->{reply_time} // 0) - ($r->{time} // 0) < 0.9 * $timeout;
}

1;
