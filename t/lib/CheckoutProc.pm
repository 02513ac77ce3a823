package CheckoutProc;

# The processes and waits of the suites' helpers (CheckoutRedis,
# CheckoutReceiver, CheckoutWorker) and of the suites themselves, written
# once. Core Perl only, no use of the runner, so it works under the
# project's Test::Nginx runner and under CPAN's alike.
#
#   spawn(%o)            forks a child that dies with the test process
#                        (PR_SET_PDEATHSIG), in a process group of its own;
#                        it execs a command or runs a Perl sub. Returns its
#                        pid. Options:
#                          exec => [$file, @args]  or  run => sub { ... }
#                          stdin => PATH (default /dev/null)
#                          stdout => PATH (appended; default: inherited)
#                          stderr => PATH (appended; default: with stdout)
#                          env => {NAME => value}, dir => PATH (chdir)
#                          group => 0: stay in the parent's process group
#                          (a connection of a server that stop() ends with
#                          its group)
#   reap($pid [, $wait]) whether child $pid has exited, waiting up to $wait
#                        s (0 by default: just look): its wait status ($?),
#                        -1 when it is no child of ours any more (reaped
#                        elsewhere), undef while it runs
#   stop($pid, %o)       (a child spawn()ed in a group of its own)
#                        signal => 'TERM' to the child's process group and
#                        CONT (a stopped process acts on it only once it
#                        runs); after bound => 5 s, KILL; then KILL to
#                        whatever is left of the group. Returns the status
#                        as reap() does.
#   at_exit(sub { ... }) runs the sub when the test ends, dies, or gets
#                        INT/TERM/HUP, in the process that called at_exit
#                        only: forked children (mock backends, servers, the
#                        runner's helpers) inherit END blocks and signal
#                        handlers, and must not stop what their parent
#                        started. The last one added runs first; then the
#                        signal's earlier handler (the runner's), or death
#                        by the signal.
#   wait_for(sub { ... } [, $timeout [, $every]])
#                        polls the sub every $every s (0.05) until it
#                        returns true or $timeout s ($WaitBound, 10) have
#                        passed; returns its last value
#   free_port()          a TCP port nobody listens on, never the same twice
#                        in one process
#   port_is_free($port)  whether nobody listens on the TCP port

use strict;
use warnings;

use Carp qw(croak);
use IO::Handle ();
use IO::Socket::INET ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

our $WaitBound = 10;

# ---- children ----------------------------------------------------------------

sub spawn {
    my (%o) = @_;
    my @unknown = grep { !/^(?:exec|run|stdin|stdout|stderr|env|dir|group)$/ }
                  keys %o;
    croak "CheckoutProc::spawn: unknown option(s) @unknown" if @unknown;
    croak "CheckoutProc::spawn: exec or run, one of them"
        unless defined $o{exec} xor defined $o{run};

    my $prctl = _sys_prctl();
    my $parent = $$;

    # Unflushed output would otherwise be written twice, once by the child.
    STDOUT->flush;
    STDERR->flush;

    my $pid = fork // croak "CheckoutProc: fork failed: $!";
    return $pid if $pid;

    # PR_SET_PDEATHSIG (1), SIGKILL (9): the child dies with the test even
    # when the test is SIGKILLed; then check the test did not already die
    # before that.
    syscall($prctl, 1, 9) if $prctl;
    POSIX::_exit(1) if getppid() != $parent;

    # Keeps the terminal's ^C away from it (the test stops it), and lets
    # stop() reach its own children too.
    setpgrp(0, 0) unless defined $o{group} && !$o{group};

    @ENV{ keys %{ $o{env} } } = values %{ $o{env} } if $o{env};
    if (defined $o{dir}) {
        chdir $o{dir} or POSIX::_exit(126);
    }
    open STDIN, '<', $o{stdin} // '/dev/null';
    if (defined $o{stdout}) {
        open STDOUT, '>>', $o{stdout};
        if (defined $o{stderr}) {
            open STDERR, '>>', $o{stderr};
        } else {
            open STDERR, '>&', \*STDOUT;
        }
    }

    if ($o{run}) {
        eval { $o{run}->() };
        POSIX::_exit(0);
    }
    my @cmd = @{ $o{exec} };
    { no warnings 'exec'; exec { $cmd[0] } @cmd }
    print STDERR "cannot exec $cmd[0]: $!\n";
    POSIX::_exit(127);
}

sub reap {
    my ($pid, $wait) = @_;
    my $deadline = time + ($wait // 0);
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return -1 if $r == -1;
        return undef if time >= $deadline;
        sleep 0.01;
    }
}

sub stop {
    my ($pid, %o) = @_;
    my @unknown = grep { !/^(?:signal|bound)$/ } keys %o;
    croak "CheckoutProc::stop: unknown option(s) @unknown" if @unknown;

    kill $o{signal} // 'TERM', -$pid;
    kill 'CONT', -$pid;
    my $status = reap($pid, $o{bound} // 5);
    if (!defined $status) {
        kill 'KILL', -$pid;
        $status = reap($pid, 10);
    }
    kill 'KILL', -$pid;
    return $status;
}

# The prctl syscall number from Perl's own syscall.ph (loaded into a package
# of its own: it defines a thousand subs, and can be loaded only once);
# 0 where there is none.
my $SysPrctl;
sub _sys_prctl {
    $SysPrctl //= eval {
        package CheckoutProc::Syscall;
        require 'syscall.ph';
        SYS_prctl();
    } // 0;
    return $SysPrctl;
}

# ---- the end of the test ---------------------------------------------------

my @AtExit;    # [pid that added it, sub]
my $SignalsHooked;

sub at_exit {
    my ($code) = @_;
    push @AtExit, [$$, $code];
    _hook_signals() unless $SignalsHooked++;
}

sub _run_at_exit {
    local ($?, $!, $@);    # keep the test's exit status and errors
    my @mine = grep { $_->[0] == $$ } @AtExit;
    @AtExit = grep { $_->[0] != $$ } @AtExit;
    for my $h (reverse @mine) {
        eval { $h->[1]->(); 1 } or warn "CheckoutProc: at exit: $@";
    }
}

sub _hook_signals {
    for my $sig (qw(INT TERM HUP)) {
        my $prev = $SIG{$sig};
        next if defined $prev && $prev eq 'IGNORE';
        $SIG{$sig} = sub {
            _run_at_exit();
            return $prev->(@_) if ref $prev eq 'CODE';
            $SIG{$sig} = 'DEFAULT';
            kill $sig, $$;
        };
    }
}

END { _run_at_exit() }

# ---- waits and ports -------------------------------------------------------

sub wait_for {
    my ($cond, $timeout, $every) = @_;
    my $deadline = time + ($timeout // $WaitBound);
    while (1) {
        my $v = $cond->();
        return $v if $v || time >= $deadline;
        sleep $every // 0.05;
    }
}

my %Given;

# Below the kernel's ephemeral range, so that no outgoing connection
# (nginx's upstream ones included) can hold it when a server restarts on
# it, and none of the runner's nginx ports.
sub free_port {
    my $top = 32767;
    if (open my $in, '<', '/proc/sys/net/ipv4/ip_local_port_range') {
        my ($low) = split ' ', scalar <$in>;
        $top = $low - 1 if $low && $low > 11000;
    }
    my %nginx = map { ($_ // 0) => 1 } @ENV{qw(TEST_NGINX_SERVER_PORT
                                              TEST_NGINX_PORT
                                              TEST_NGINX_CLIENT_PORT)};

    for (1 .. 1000) {
        my $port = 10000 + int rand($top - 10000 + 1);
        next if $nginx{$port} || $Given{$port} || !port_is_free($port);
        $Given{$port} = 1;
        return $port;
    }
    croak "CheckoutProc: no free TCP port found";
}

# With SO_REUSEADDR, Linux refuses the bind only while someone listens there
# (on any address), which is exactly the question (TIME_WAIT leftovers of an
# earlier server do not count: it binds over them too).
sub port_is_free {
    my ($port) = @_;
    my $probe = IO::Socket::INET->new(LocalAddr => '0.0.0.0',
                                      LocalPort => $port, Proto => 'tcp',
                                      ReuseAddr => 1, Listen => 1)
        or return 0;
    close $probe;
    return 1;
}

1;
