# checkout-worker integration: the entries a worker holds are touched, every
# one of them, so that a second worker on the group does not take them over
# while they wait behind their subject. Each touch claims the held entries
# again (JUSTID), which resets their idle time below min-idle.
#
# The newest held entry was once left out of the touch (its command was one
# argument short and dropped the last id): after min-idle the second worker
# reclaimed it and delivered it before the entries ahead of it.
#
#   prove -It/lib t/020-worker-touch.t

use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use CheckoutWorker ();

CheckoutWorker::setup();

my $S = $CheckoutWorker::Stream;

CheckoutWorker::scenario('three entries of one subject held past min-idle: '
                         . 'all touched, none taken over' => sub {
    my $rx = CheckoutWorker::receiver();
    # min-idle 6 s, above the 5 s timeout as the config requires: held
    # entries are touched every 2 s, idle ones reclaimed after 6 s
    my %g = (receipt => { url => $rx->url('/rx'), timeout => '5s',
                          'min-idle' => '6s' });
    my $subj = CheckoutWorker::random_id();
    # the first two take 4 s each: the third waits 8 s, past min-idle
    my @e = (CheckoutWorker::add_event(id => "${subj}_1", subject => $subj,
                                       rx => { slow => 4000 }),
             CheckoutWorker::add_event(id => "${subj}_2", subject => $subj,
                                       rx => { slow => 4000 }, state => 0),
             CheckoutWorker::add_event(id => "${subj}_3", subject => $subj,
                                       state => 0));
    my $w1 = CheckoutWorker->start(name => 'holder', groups => [%g]);
    CheckoutWorker::ok_wait('worker 1 holds all three', sub {
        my %p = map { ($_->[0] => $_->[1]) } CheckoutWorker::pending(
            $S, 'receipt');
        3 == grep { ($p{ $_->{entry} } // '') eq 'holder' } @e;
    });
    my $w2 = CheckoutWorker->start(name => 'taker', groups => [%g]);

    my ($l) = $w1->wait_for_outcome(id => $e[2]{entry}, result => 'done',
                                    _timeout => 30);
    ok($l, "worker 1 delivers $e[2]{ce_id}, held about 8 s")
        or diag($w1->log_tail);
    is(join(' ', map { $_->{headers}{'ce-id'} } $rx->requests),
       join(' ', map { $_->{ce_id} } @e),
       'the receiver got each entry once, in the subject\'s order');
    is(scalar(grep { ($_->{id} // '') eq $e[2]{entry} } $w2->log_lines), 0,
       'worker 2 never had the newest one');
    is(scalar(grep { ($_->{result} // '') eq 'released' } $w1->log_lines),
       0, 'worker 1 lost none of them to worker 2');
    CheckoutWorker::ok_wait('nothing pending', sub {
        !CheckoutWorker::pending($S, 'receipt');
    });
    $w2->stop_ok;
    $w1->stop_ok;
});

CheckoutWorker::finish();
