package CheckoutExit;

# Cleanup on interruption, for the suites' helpers (CheckoutRedis,
# CheckoutWorker, CheckoutReceiver): install(\&cleanup) runs cleanup when
# the test process gets INT, TERM or HUP, then does what would have happened
# without it: the handler installed before (the runner's, or another
# helper's: they chain), or death by the signal. Core Perl only.

use strict;
use warnings;

sub install {
    my ($cleanup) = @_;
    for my $sig (qw(INT TERM HUP)) {
        my $prev = $SIG{$sig};
        next if defined $prev && $prev eq 'IGNORE';
        $SIG{$sig} = sub {
            $cleanup->();
            return $prev->(@_) if ref $prev eq 'CODE';
            $SIG{$sig} = 'DEFAULT';
            kill $sig, $$;
        };
    }
}

1;
