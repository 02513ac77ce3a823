package CheckoutWorker;

# checkout-worker processes for the integration suites (t/020-worker-*.t):
# config files, start/stop/kill, the worker's logfmt log, its admin port
# (RESP spoken here in Perl, and through the real redis-cli), events shaped
# like the nginx module's, and the final "exited cleanly, no sanitizer
# report" checks.
#
#     use Test::More;
#     use CheckoutWorker ();
#     CheckoutWorker::setup();     # builds the worker (or skip_all), starts
#                                  # redis-server (CheckoutRedis), test dir
#     my $rx = CheckoutReceiver->new;
#     my $w = CheckoutWorker->start(groups => [receipt => {url => $rx->url}]);
#     my $ev = CheckoutWorker::add_event(type => 'OrderConfirmed');
#     ...
#     $w->stop_ok;                 # TERM: exit 0, no sanitizer report
#     CheckoutWorker::finish();    # the same for the rest, done_testing
#
# The binary: $ENV{CHECKOUT_WORKER}, or build/worker/checkout-worker-asan
# (AddressSanitizer + UBSan), built with `make -C worker all` under a lock
# (prove -j runs several files at once). Only when it cannot be built does
# setup() skip the file (plan skip_all, with make's last lines as reason).
#
# A worker: CheckoutWorker->new(%opts) (->start starts it too):
#   name      consumer-name, and the prefix of its files (default w1, w2...)
#   groups    [NAME => {directive => value, ...}, ...] in order; defaults
#             (%GroupDefaults: short timings) fill in, a value of undef
#             drops a directive (the worker's own default then)
#   global    [directive => value, ...] more global directives (or a hash)
#   admin_password, consumer (undef: no consumer-name line), log (a path;
#   default DIR/NAME.log; 'stderr' allowed), redis ("HOST:PORT")
# Methods: start, stop([$timeout]) -> {code, signal, timed_out, elapsed},
#   stop_ok([$desc]), signal($sig), kill9, wait_exit($timeout), running,
#   pid, admin_port, config_file, log_file, stderr_file, config_text,
#   log_lines([$file]), outcomes(%filter), wait_for_log(sub {...}, $timeout),
#   wait_for_outcome(%filter, _timeout => s, _count => n),
#   admin(@cmd) (a cached connection, AUTHed when admin_password is set),
#   admin_conn() (a new CheckoutWorker::Conn), cli(@args), cli_opts(\%o, @a),
#   info([$section]) -> {key => value, group_NAME => {k => v}},
#   sanitizer_reports() (this worker's), log_tail($n).
# Module functions: setup(), dir(), binary(), add_event(%o), random_id(),
#   state_of($subject), pending($stream, $group), dlq([$stream]), finish(),
#   wait_for(sub {...}, $timeout) (CheckoutProc::wait_for), parse_logfmt($line),
#   run(@cmd),
#   requests_for($rx, $ce_id), ids(@requests), first5(@list),
#   one_at_a_time($desc, @requests), held_retry($w, $rx, $wait_s),
#   held_behind(name => N, slow_ms => MS, min_idle => T[, count => C]),
#   dead_letter_of($entry_id).

use strict;
use warnings;

use CheckoutProc ();
use Carp qw(croak);
use Cwd qw(abs_path);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Fcntl qw(:flock);
use File::Basename qw(dirname);
use File::Path qw(remove_tree make_path);
use File::Temp qw(tempdir);
use JSON::PP ();
use POSIX qw(strftime);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Test::More ();
use Time::HiRes qw(time sleep);

use CheckoutRedis ();
use CheckoutReceiver ();

our $Root = abs_path(dirname(__FILE__) . '/../..');
our $StartBound = 20;     # s until the admin port answers
our $StopBound  = 20;     # s from TERM to KILL (beyond shutdown-timeout)
our $CliTimeout = 15;
our $Stream = 'checkout:events';
our $Dlq = 'checkout:events:dlq';

# Short timings, so that retries, reclaims and drains take seconds: min-idle
# must stay above timeout and backoff-cap.
our %GroupDefaults = (
    stream           => $Stream,
    handler          => 'http',
    timeout          => '2s',
    concurrency      => 1,
    'max-attempts'   => 3,
    'backoff-base'   => '50ms',
    'backoff-cap'    => '200ms',
    'min-idle'       => '3s',
);
our @GroupOrder = qw(stream handler url timeout concurrency max-attempts
                     backoff-base backoff-cap min-idle schema-versions types);

my $Dir;            # the test file's dir: configs, logs, sanitizer reports
my $Binary;
my @Workers;        # every worker of the file
my $Seq = 0;
my $JSON = JSON::PP->new->canonical->allow_nonref;

# ---- setup and teardown ----------------------------------------------------

sub binary { $Binary }
sub dir    { $Dir }

# Builds the worker (or skips the file), starts the redis-server, makes the
# test dir. Returns the redis port.
sub setup {
    my (%opts) = @_;
    $Binary = _build();
    my $port = CheckoutRedis::start(%opts);
    # After Redis' own: at the end the workers stop first, Redis last.
    CheckoutProc::at_exit(\&_cleanup);
    $Dir = tempdir('checkout-worker-XXXXXXXX', DIR => '/tmp');
    return $port;
}

sub _build {
    if (my $bin = $ENV{CHECKOUT_WORKER}) {
        -x $bin or Test::More::plan(skip_all =>
            "CHECKOUT_WORKER=$bin is not an executable file");
        return $bin;
    }
    my $bin = "$Root/build/worker/checkout-worker-asan";
    for my $cmd ('make', $ENV{CC} || 'cc') {
        system("command -v '$cmd' >/dev/null 2>&1") == 0
            or Test::More::plan(skip_all =>
                "checkout-worker cannot be built: no $cmd");
    }
    # A make above this one (make test) must not hand its job server down.
    delete local @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL)};
    make_path("$Root/build");
    # Several suites build at once under prove -j: one make at a time.
    open my $lock, '>>', "$Root/build/.worker-build.lock"
        or croak "CheckoutWorker: $Root/build/.worker-build.lock: $!";
    flock $lock, LOCK_EX;
    my $out = `make -C '$Root/worker' all 2>&1`;
    my $status = $?;
    close $lock;
    if ($status != 0 || !-x $bin) {
        my @lines = grep { /\S/ } split /\n/, $out;
        splice @lines, 0, -6 if @lines > 6;
        Test::More::plan(skip_all => "checkout-worker-asan cannot be built "
            . "(make -C worker all: exit " . ($status >> 8) . "): "
            . join(' | ', @lines));
    }
    return $bin;
}

# The end of a test file: every worker still running is stopped (exit 0
# expected), no sanitizer report may exist, then done_testing.
sub finish {
    for my $w (@Workers) {
        $w->stop_ok("$w->{name} (still running at the end) exits 0")
            if $w->running;
    }
    my @reports = all_sanitizer_reports();
    Test::More::ok(!@reports, 'no AddressSanitizer/UBSan report')
        or Test::More::diag(_report_text(@reports));
    Test::More::done_testing();
}

sub all_sanitizer_reports {
    return () unless $Dir;
    my @r = grep { -s } glob("$Dir/asan.* $Dir/ubsan.*");
    for my $f (glob("$Dir/*.stderr")) {
        push @r, $f if _has_sanitizer_text($f);
    }
    return @r;
}

sub _has_sanitizer_text {
    my ($file) = @_;
    open my $in, '<', $file or return 0;
    while (<$in>) {
        return 1 if /Sanitizer|runtime error:/;
    }
    return 0;
}

sub _report_text {
    my @out;
    for my $f (@_) {
        open my $in, '<', $f or next;
        my @l = <$in>;
        splice @l, 60 if @l > 60;
        push @out, "== $f ==\n", @l;
    }
    return join '', @out;
}

sub _cleanup {
    for my $w (grep { $_->running } @Workers) {
        CheckoutProc::stop($w->{pid});
        undef $w->{pid};
    }
    CheckoutReceiver::_cleanup();
    if ($Dir) {
        my $tb = Test::More->builder;
        if ($tb->is_passing && !$ENV{CHECKOUT_KEEP}) {
            remove_tree($Dir);
        } else {
            print STDERR "# CheckoutWorker: kept $Dir (configs, worker logs, "
                       . "receiver logs)\n";
        }
    }
}

# A receiver whose logs stay in the test dir (kept when a test fails).
my @Receivers;
sub receiver {
    my $d = "$Dir/rx" . ++$Seq;
    make_path($d);
    my $rx = CheckoutReceiver->new(dir => $d);
    push @Receivers, $rx;
    return $rx;
}

# One scenario of a suite, as a subtest on a clean Redis (running, flushed):
# an exception fails it instead of ending the file, and the workers it
# started and still runs are stopped at its end (exit 0 and no sanitizer
# report asserted), its receivers too.
sub scenario {
    my ($name, $body) = @_;
    my ($nw, $nr) = (scalar @Workers, scalar @Receivers);
    Test::More::subtest($name => sub {
        my $ok = eval {
            CheckoutRedis::restart() unless CheckoutRedis::pid();
            CheckoutRedis::flush();
            $body->();
            1;
        };
        Test::More::fail("$name: died: $@") unless $ok;
        my @mine = @Workers[$nw .. $#Workers];
        for my $w (@mine) {
            $w->stop_ok("$w->{name} exits 0 at the end of the scenario")
                if $w->running;
        }
        if (!Test::More->builder->is_passing) {
            Test::More::diag($_->log_tail(25)) for @mine;
        }
    });
    $_->stop for @Receivers[$nr .. $#Receivers];
}

# ok() on a condition polled until true (bounded); diag($diag->()) if not.
sub ok_wait {
    my ($desc, $cond, $timeout, $diag) = @_;
    my $v = wait_for($cond, $timeout // 15);
    Test::More::ok($v, $desc) or Test::More::diag($diag ? $diag->() : ());
    return $v;
}

# ok() that a condition stays true for $secs s (a property that must hold
# over time: "nothing is delivered while paused"); polls every 50 ms.
sub ok_holds {
    my ($desc, $cond, $secs, $diag) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        if (!$cond->()) {
            Test::More::fail($desc);
            Test::More::diag($diag->()) if $diag;
            return 0;
        }
        sleep 0.05;
    }
    return Test::More::pass($desc);
}

# Asserts the HTTP request $r carries event $ev as the worker must deliver
# it for $group (CloudEvents binary mode + Idempotency-Key).
sub request_is_event {
    my ($r, $ev, $group, $desc) = @_;
    my %f = @{ $ev->{fields} };
    my $h = $r->{headers};
    my %want = (
        'ce-specversion' => $f{ce_specversion},
        'ce-id' => $f{ce_id},
        'ce-type' => $f{ce_type},
        'ce-source' => $f{ce_source},
        'ce-time' => $f{ce_time},
        'ce-subject' => $f{ce_subject},
        'ce-schemaversion' => $f{ce_schemaversion},
        'content-type' => $f{'content-type'} // 'application/json',
        'idempotency-key' => "$group:$f{ce_id}",
    );
    my %got = map { $_ => $h->{$_} } keys %want;
    Test::More::is_deeply(\%got, \%want, "$desc: CloudEvents headers and "
                                         . "Idempotency-Key");
    Test::More::is($r->{method}, 'POST', "$desc: POST");
    Test::More::is($r->{body}, $f{data}, "$desc: body = data, verbatim");
    Test::More::like($h->{'user-agent'} // '', qr{^checkout-worker/\d},
                     "$desc: User-Agent checkout-worker/<version>");
}

# The requests for one event (by ce-id).
sub requests_for {
    my ($rx, $ce_id) = @_;
    return grep { ($_->{headers}{'ce-id'} // '') eq $ce_id } $rx->requests;
}

# The ce-ids of receiver requests, in order, space-separated.
sub ids { join ' ', map { $_->{headers}{'ce-id'} } @_ }

# The first five of a list (for diagnostics).
sub first5 { return @_[0 .. ($#_ < 4 ? $#_ : 4)] }

# A test that the requests (of one subject) never overlap: each one
# arrives after the reply to the one before was written.
sub one_at_a_time {
    my ($desc, @r) = @_;
    my @bad;
    for my $i (1 .. $#r) {
        my $prev = $r[$i - 1];
        push @bad, "$r[$i]{headers}{'ce-id'} arrived at $r[$i]{time}, "
                   . "before the reply to $prev->{headers}{'ce-id'} ("
                   . ($prev->{reply_time} // 'none') . ')'
            if !defined $prev->{reply_time}
               || $r[$i]{time} < $prev->{reply_time};
    }
    Test::More::ok(!@bad, $desc) or Test::More::diag(join "\n", first5(@bad));
}

# Events of one new subject ($n, default 3) held by a new worker $name
# (group receipt, timeout 5s, min-idle $min_idle) behind the first, which
# the receiver answers after $slow_ms. Returns (worker, receiver, events)
# once the first is in flight and the others are pending to $name.
sub held_behind {
    my (%o) = @_;
    my ($name, $slow, $n) = ($o{name}, $o{slow_ms}, $o{count} // 3);
    my $rx = receiver();
    my $subj = random_id();
    my @e = (add_event(id => "${subj}_1", subject => $subj,
                       rx => { slow => $slow }),
             map { add_event(id => "${subj}_$_", subject => $subj,
                             state => 0) } 2 .. $n);
    my $w = CheckoutWorker->start(name => $name, groups => [
        receipt => { url => $rx->url('/rx'), timeout => '5s',
                     'min-idle' => $o{min_idle} }]);
    Test::More::ok($rx->wait_for_requests(1, 15),
                   "$e[0]{ce_id} is in flight ($slow ms)");
    ok_wait("the later ones are held by $name", sub {
        my %p = map { ($_->[0] => $_->[1]) } pending($Stream, 'receipt');
        !grep { ($p{ $_->{entry} } // '') ne $name } @e[1 .. $#e];
    });
    return ($w, $rx, @e);
}

# Two events of one new subject, the first answered 503 once, and its
# retry made to wait $wait s in the schedule (full jitter can draw a wait
# of a few ms: its due time in Redis, what decides when it is claimed, is
# moved). Should the retry still have come first, again with a new subject
# (3 tries). Returns (first event, second event, due time ms) or () after
# a failed test.
sub held_retry {
    my ($w, $rx, $wait) = @_;
    my $zset = 'checkout:worker:retry:receipt';
    for my $try (1 .. 3) {
        my $subj = random_id();
        my $e1 = add_event(id => "${subj}_1", subject => $subj,
                           rx => { flaky => 1 });
        my $e2 = add_event(id => "${subj}_2", subject => $subj, state => 0);
        my ($r) = $w->wait_for_outcome(id => $e1->{entry}, result => 'retry');
        Test::More::ok($r, "$e1->{ce_id}: 503, result=retry") or return;
        my $due = int((Time::HiRes::time() + $wait) * 1000);
        CheckoutRedis::cmd('ZADD', $zset, 'XX', 'GT', $due, $e1->{entry});
        if (defined CheckoutRedis::cmd('ZSCORE', $zset, $e1->{entry})
            && $rx->calls("receipt:$e1->{ce_id}") == 1) {
            Test::More::pass('a retry waits in the schedule');
            return ($e1, $e2, $due);
        }
        Test::More::note("the retry of $e1->{ce_id} came first: again");
        $w->wait_for_outcome(id => $e2->{entry}, result => 'done');
    }
    Test::More::fail('a retry waits in the schedule');
    return;
}

# ---- a worker --------------------------------------------------------------

sub new {
    my ($class, %o) = @_;
    croak "CheckoutWorker: setup() first" unless $Dir;
    my @known = qw(name groups global admin_password consumer log redis
                   config_text);
    my %known = map { $_ => 1 } @known;
    my @unknown = grep { !$known{$_} } keys %o;
    croak "CheckoutWorker->new: unknown option(s) @unknown" if @unknown;

    my $name = $o{name} // 'w' . (@Workers + 1);
    croak "CheckoutWorker: bad name $name" unless $name =~ /^[\w.-]+$/;
    my $self = bless {
        name   => $name,
        groups => $o{groups} || [],
        global => ref $o{global} eq 'HASH' ? [ %{ $o{global} } ]
                                           : ($o{global} || []),
        admin_password => $o{admin_password},
        consumer => exists $o{consumer} ? $o{consumer} : $name,
        log => $o{log} // "$Dir/$name.log",
        redis => $o{redis} // '127.0.0.1:' . CheckoutRedis::port(),
        config_file => "$Dir/$name.conf",
        stderr_file => "$Dir/$name.stderr",
        config_text => $o{config_text},
        pids => [],
    }, $class;
    push @Workers, $self;
    return $self;
}

sub start {
    my ($self, @args) = @_;
    $self = $self->new(@args) unless ref $self;
    croak "CheckoutWorker: $self->{name} is running" if $self->running;
    for my $attempt (1 .. 4) {
        $self->{admin_port} //= CheckoutProc::free_port();
        $self->_write_config;
        return $self if $self->_launch;
        undef $self->{admin_port};
    }
    croak "CheckoutWorker: $self->{name}: no free admin port";
}

sub name         { $_[0]{name} }
sub pid          { $_[0]{pid} }
sub admin_port   { $_[0]{admin_port} }
sub config_file  { $_[0]{config_file} }
sub log_file     { $_[0]{log} }
sub stderr_file  { $_[0]{stderr_file} }
sub consumer     { $_[0]{consumer} }

sub config_text {
    my ($self) = @_;
    return $self->{config_text} if defined $self->{config_text};
    my @l = ("# written by t/lib/CheckoutWorker.pm");
    push @l, "redis $self->{redis}";
    push @l, "consumer-name $self->{consumer}" if defined $self->{consumer};
    push @l, "admin 127.0.0.1:" . ($self->{admin_port} // 6381);
    push @l, "admin-password $self->{admin_password}"
        if defined $self->{admin_password};
    push @l, "log $self->{log}";
    my %g = @{ $self->{global} };
    push @l, "shutdown-timeout 5s" unless exists $g{'shutdown-timeout'};
    my @glob = @{ $self->{global} };
    while (my ($k, $v) = splice @glob, 0, 2) {
        push @l, "$k $v" if defined $v;
    }
    my @groups = @{ $self->{groups} };
    while (my ($name, $conf) = splice @groups, 0, 2) {
        my %c = (%GroupDefaults, %$conf);
        push @l, '', "group $name";
        my %done;
        for my $k (@GroupOrder, sort keys %c) {
            next if $done{$k}++;
            next unless exists $c{$k} && defined $c{$k};
            my $v = ref $c{$k} eq 'ARRAY' ? join(' ', @{ $c{$k} }) : $c{$k};
            push @l, "    $k $v";
        }
    }
    return join("\n", @l) . "\n";
}

sub _write_config {
    my ($self) = @_;
    open my $out, '>', $self->{config_file}
        or croak "CheckoutWorker: $self->{config_file}: $!";
    print $out $self->config_text;
    close $out;
}

sub _env {
    return (
        ASAN_OPTIONS => "detect_leaks=1:abort_on_error=0:halt_on_error=1"
                        . ":log_path=$Dir/asan",
        UBSAN_OPTIONS => "print_stacktrace=1:halt_on_error=1"
                         . ":log_path=$Dir/ubsan",
    );
}

# Starts the process and waits for its admin port. 0: the port was taken.
sub _launch {
    my ($self) = @_;
    my $err_start = -s $self->{stderr_file} // 0;
    my $log_start = -s $self->{log} // 0;
    $self->{pid} = CheckoutProc::spawn(
        exec => [$Binary, '-c', $self->{config_file}], env => { _env() },
        dir => $Dir, stdout => $self->{stderr_file});
    push @{ $self->{pids} }, $self->{pid};
    $self->{started} = time;
    undef $self->{conn};
    my $deadline = time + $StartBound;
    while (1) {
        my $r = $self->_probe;
        return 1 if $r;
        if ($self->_reaped) {
            my $text = _since($self->{stderr_file}, $err_start)
                     . _since($self->{log}, $log_start);
            return 0 if $text =~ /address already in use/i;
            croak "CheckoutWorker: $self->{name} exited at start (status "
                  . $self->{exit}{status} . "):\n$text";
        }
        if (time > $deadline) {
            my $text = _since($self->{stderr_file}, $err_start)
                     . _since($self->{log}, $log_start);
            croak "CheckoutWorker: $self->{name}: the admin port "
                  . "$self->{admin_port} did not answer PING within "
                  . "$StartBound s:\n$text";
        }
        sleep 0.05;
    }
}

# The admin port answers PING (PONG, or NOAUTH with a password set).
sub _probe {
    my ($self) = @_;
    my $c = eval { CheckoutWorker::Conn->new($self->{admin_port}, 0.5) }
        or return 0;
    my $r = eval { $c->cmd('PING') };
    return 0 unless defined $r;
    return 1 if !ref $r && $r eq 'PONG';
    return 1 if ref $r eq 'HASH' && $r->{error} =~ /^NOAUTH/;
    return 0;
}

sub _since {
    my ($file, $offset) = @_;
    open my $in, '<', $file or return '';
    seek $in, $offset // 0, 0;
    local $/;
    return scalar(<$in>) // '';
}

sub running { defined $_[0]{pid} && !$_[0]->_reaped }

# Whether the process has exited (reaped now or earlier); records its exit.
sub _reaped {
    my ($self) = @_;
    my $pid = $self->{pid} // return 1;
    my $st = CheckoutProc::reap($pid) // return 0;
    $self->{exit} = {
        status => $st,
        code => $st >= 0 ? $st >> 8 : undef,
        signal => $st >= 0 ? $st & 127 : undef,
        elapsed => time - ($self->{signalled} // $self->{started}),
        pid => $pid,
    };
    undef $self->{pid};
    undef $self->{conn};
    return 1;
}

sub signal {
    my ($self, $sig) = @_;
    my $pid = $self->{pid} or croak "CheckoutWorker: $self->{name} not running";
    $self->{signalled} = time;
    kill $sig, $pid;
}

# Waits up to $timeout s for the process to exit; its exit (a hash:
# code, signal, status, elapsed) or undef if it still runs.
sub wait_exit {
    my ($self, $timeout) = @_;
    CheckoutProc::wait_for(sub { $self->_reaped }, $timeout // $StopBound,
                           0.02) or return undef;
    return $self->{exit};
}

# TERM; waits up to $timeout (default: shutdown-timeout + $StopBound), then
# KILL. Returns the exit hash (timed_out set when it had to be KILLed).
sub stop {
    my ($self, $timeout) = @_;
    return $self->{exit} unless $self->running;
    $self->signal('TERM');
    my $e = $self->wait_exit($timeout // $StopBound);
    return $e if $e;
    kill 'KILL', $self->{pid};
    $e = $self->wait_exit(10);
    $e->{timed_out} = 1 if $e;
    return $e;
}

# stop(), asserting a clean exit: code 0 and no sanitizer report.
sub stop_ok {
    my ($self, $desc, $timeout) = @_;
    my $e = $self->stop($timeout);
    $self->exit_ok($e, $desc // "$self->{name} stops on TERM with exit 0");
}

sub exit_ok {
    my ($self, $e, $desc) = @_;
    my $ok = $e && !$e->{timed_out} && defined $e->{code}
             && $e->{code} == 0 && !$e->{signal};
    Test::More::ok($ok, $desc) or Test::More::diag(
        "exit: " . ($e ? join(', ', map { "$_=" . ($e->{$_} // 'undef') }
                                    sort keys %$e)
                       : 'still running')
        . "\n" . $self->log_tail(15) . _report_text($self->sanitizer_reports));
    my @r = $self->sanitizer_reports;
    Test::More::ok(!@r, "$self->{name}: no sanitizer report")
        or Test::More::diag(_report_text(@r));
    return $ok;
}

sub kill9 {
    my ($self) = @_;
    return unless $self->running;
    $self->signal('KILL');
    $self->wait_exit(10);
}

# Sanitizer reports of this worker's processes: files named after their
# pids, and sanitizer lines in its stderr.
sub sanitizer_reports {
    my ($self) = @_;
    my @r;
    for my $pid (@{ $self->{pids} }) {
        push @r, grep { -s } "$Dir/asan.$pid", "$Dir/ubsan.$pid";
    }
    push @r, $self->{stderr_file} if _has_sanitizer_text($self->{stderr_file});
    return @r;
}

sub log_tail {
    my ($self, $n) = @_;
    $n ||= 20;
    my @out;
    for my $f ($self->{log}, $self->{stderr_file}) {
        open my $in, '<', $f or next;
        my @l = <$in>;
        splice @l, 0, -$n if @l > $n;
        push @out, "-- $f:\n", @l;
    }
    return join '', @out;
}

# ---- log -------------------------------------------------------------------

# "k=v k2="quoted \"x\"" ..." -> {k => 'v', k2 => 'quoted "x"', _raw => line}
sub parse_logfmt {
    my ($line) = @_;
    chomp $line;
    my %h = (_raw => $line);
    while ($line =~ /\G\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)/gc) {
        my ($k, $v) = ($1, $2);
        if ($v =~ s/^"(.*)"$/$1/s) {
            $v =~ s/\\(x[0-9a-fA-F]{2}|.)/
                      $1 eq 'n' ? "\n" : $1 eq 'r' ? "\r" : $1 eq 't' ? "\t"
                    : length $1 == 3 ? chr hex substr($1, 1) : $1/ge;
        }
        $h{$k} = $v;
    }
    return \%h;
}

sub log_lines {
    my ($self, $file) = @_;
    open my $in, '<', $file // $self->{log} or return ();
    my @out;
    while (my $l = <$in>) {
        last unless $l =~ /\n\z/;
        push @out, parse_logfmt($l);
    }
    return @out;
}

# The outcome lines (those with result=) matching every key => value given
# (a value may be a regexp).
sub outcomes {
    my ($self, %f) = @_;
    return grep { _matches($_, \%f) } grep { defined $_->{result} }
           $self->log_lines;
}

sub _matches {
    my ($line, $f) = @_;
    for my $k (keys %$f) {
        next if $k =~ /^_/;
        my $v = $line->{$k};
        return 0 unless defined $v;
        if (ref $f->{$k} eq 'Regexp') {
            return 0 unless $v =~ $f->{$k};
        } else {
            return 0 unless $v eq $f->{$k};
        }
    }
    return 1;
}

# Waits until $cond->(line) holds for some line; returns that line.
sub wait_for_log {
    my ($self, $cond, $timeout, $file) = @_;
    my $found;
    wait_for(sub {
        ($found) = grep { $cond->($_) } $self->log_lines($file);
        $found;
    }, $timeout // 15);
    return $found;
}

# Waits until there are _count (default 1) outcome lines matching the
# filter; returns them all.
sub wait_for_outcome {
    my ($self, %f) = @_;
    my $n = $f{_count} // 1;
    my @l;
    wait_for(sub { @l = $self->outcomes(%f); @l >= $n }, $f{_timeout} // 15);
    return @l;
}

sub wait_for { CheckoutProc::wait_for(@_) }

# ---- admin -----------------------------------------------------------------

sub admin_conn {
    my ($self, $timeout) = @_;
    return CheckoutWorker::Conn->new($self->{admin_port}, $timeout);
}

# One command on a cached connection (AUTHed first when a password is set).
# The reply as CheckoutRedis gives it, errors as {error => '...'}.
sub admin {
    my ($self, @cmd) = @_;
    for my $try (1, 2) {
        if (!$self->{conn} || !$self->{conn}->usable) {
            $self->{conn} = $self->admin_conn;
            if (defined $self->{admin_password}) {
                my $r = $self->{conn}->cmd('AUTH', $self->{admin_password});
                croak "CheckoutWorker: AUTH: $r->{error}" if ref $r eq 'HASH';
            }
        }
        my $r = eval { $self->{conn}->cmd(@cmd) };
        return $r unless $@;
        undef $self->{conn};
        croak "CheckoutWorker: admin $cmd[0]: $@" if $try == 2;
    }
}

# INFO, parsed: {key => value}, and per group group_NAME => {k => v}; the
# sections as _sections => [names].
sub info {
    my ($self, @section) = @_;
    my $text = $self->admin('INFO', @section);
    croak "CheckoutWorker: INFO: $text->{error}" if ref $text eq 'HASH';
    return parse_info($text);
}

sub parse_info {
    my ($text) = @_;
    my %i = (_sections => [], _text => $text);
    for my $line (split /\r?\n/, $text // '') {
        if ($line =~ /^# (\S.*)$/) {
            push @{ $i{_sections} }, $1;
            next;
        }
        my ($k, $v) = $line =~ /^([^:]+):(.*)$/ or next;
        if ($k =~ /^group_/) {
            $i{$k} = { map { split /=/, $_, 2 } split /,/, $v };
        } else {
            $i{$k} = $v;
        }
    }
    return \%i;
}

# redis-cli -p PORT ARGS: (stdout, exit code, stderr).
sub cli {
    my ($self, @args) = @_;
    return $self->cli_opts({}, @args);
}

# Options: auth => 1 (-a the admin password), stdin => TEXT (commands from
# standard input: one connection), no_raw => 1 (formatted replies).
sub cli_opts {
    my ($self, $o, @args) = @_;
    my @cmd = ('redis-cli', '-p', $self->{admin_port});
    push @cmd, '--no-auth-warning', '-a', $self->{admin_password}
        if $o->{auth} && defined $self->{admin_password};
    push @cmd, '--no-raw' if $o->{no_raw};
    return run({ stdin => $o->{stdin}, timeout => $o->{timeout} },
               @cmd, @args);
}

# Runs a command: (stdout, exit code (-1: killed after the timeout), stderr).
sub run {
    my $o = ref $_[0] eq 'HASH' ? shift : {};
    my @cmd = @_;
    my $n = ++$Seq;
    my ($in, $out, $err) = map { "$Dir/run$$.$n.$_" } qw(in out err);
    open my $fh, '>', $in or croak "$in: $!";
    print $fh $o->{stdin} // '';
    close $fh;
    my $pid = CheckoutProc::spawn(exec => \@cmd, env => { _env() },
                                  stdin => $in, stdout => $out, stderr => $err);
    my $st = CheckoutProc::reap($pid, $o->{timeout} // $CliTimeout);
    my $code = !defined $st ? -1 : $st & 127 ? 128 + ($st & 127) : $st >> 8;
    CheckoutProc::stop($pid, signal => 'KILL') unless defined $st;
    my @res = (_slurp($out), $code, _slurp($err));
    unlink $in, $out, $err;
    return @res;
}

sub _slurp {
    open my $in, '<', $_[0] or return '';
    local $/;
    return scalar(<$in>) // '';
}

# ---- events and Redis ------------------------------------------------------

my @IdChars = ('A' .. 'Z', 'a' .. 'z', '0' .. '9');
sub random_id {
    return 'chk_' . join '', map { $IdChars[rand @IdChars] } 1 .. 22;
}

sub now_rfc3339 {
    my $t = time;
    return strftime('%Y-%m-%dT%H:%M:%S', gmtime $t)
           . sprintf('.%03dZ', ($t - int $t) * 1000);
}

# XADDs an event the way the nginx module writes it, and (unless state => 0)
# creates its checkout state hash. Options:
#   stream, id (ce_id; default a new checkout id), type (OrderConfirmed),
#   subject (default: the id, as the module does), data (a reference:
#   JSON-encoded, or a string taken verbatim; default {checkoutId, status}),
#   rx (merged into data as "rx": the receiver's per-event behaviour),
#   fields {name => value}: overrides; undef drops the field,
#   extra [name, value, ...]: appended fields,
#   state: 0 (none), 1 (default) or {field => value} (more fields).
# Returns {entry => stream id, ce_id, subject, fields => [name, value...]}.
sub add_event {
    my (%o) = @_;
    my $stream = $o{stream} // $Stream;
    my $id = $o{id} // random_id();
    my $subject = exists $o{subject} ? $o{subject} : $id;
    my $type = $o{type} // 'OrderConfirmed';
    my $status = $type eq 'CheckoutPendingReview' ? 'pending_review'
               : $type eq 'CheckoutDeclined' ? 'declined' : 'confirmed';
    my $data = $o{data} // { checkoutId => $id, status => $status };
    if ($o{rx}) {
        croak "add_event: rx needs data as a hash" unless ref $data eq 'HASH';
        $data = { %$data, rx => $o{rx} };
    }
    $data = $JSON->encode($data) if ref $data;
    my $time = now_rfc3339();

    my @fields = event_fields($id, $type, $time, $subject, $data);
    my $over = $o{fields} || {};
    my @out;
    my %seen;
    while (my ($k, $v) = splice @fields, 0, 2) {
        $seen{$k} = 1;
        $v = $over->{$k} if exists $over->{$k};
        push @out, $k, $v if defined $v;
    }
    for my $k (sort keys %$over) {
        push @out, $k, $over->{$k} if !$seen{$k} && defined $over->{$k};
    }
    push @out, @{ $o{extra} } if $o{extra};

    # One transaction, as the module writes both in one script: a worker
    # blocked in XREADGROUP must not see the entry before the hash.
    my $state = $o{state} // 1;
    my @hash;
    if ($state && defined $subject && length $subject) {
        my %h = (status => $status, created => $time, updated => $time,
                 (ref $state eq 'HASH' ? %$state : ()));
        my $ev = delete $h{eventId} // $id;
        # eventId last, as the module writes it
        @hash = ("checkout:$subject",
                 (map { $_ => $h{$_} } sort keys %h), eventId => $ev);
    }
    CheckoutRedis::cmd('MULTI');
    CheckoutRedis::cmd('XADD', $stream, '*', @out);
    if (@hash) {
        CheckoutRedis::cmd('HSET', @hash);
        CheckoutRedis::cmd('EXPIRE', $hash[0], 86400);
    }
    my $res = CheckoutRedis::cmd('EXEC');
    croak "add_event: the transaction failed" unless ref $res eq 'ARRAY';
    for my $r (@$res) {
        croak "add_event: $r->{error}" if ref $r eq 'HASH';
    }
    my $entry = $res->[0];
    return { entry => $entry, ce_id => $id, subject => $subject,
             stream => $stream, fields => \@out, type => $type };
}

# A stream entry's fields and values as the nginx module writes them.
sub event_fields {
    my ($id, $type, $time, $subject, $data) = @_;
    return (ce_specversion => '1.0', ce_id => $id, ce_type => $type,
            ce_source => '/checkout', ce_time => $time,
            ce_subject => $subject, ce_schemaversion => '1',
            'content-type' => 'application/json', data => $data);
}

# Prints, for `redis-cli --pipe`, the commands that append $n events of
# new checkouts (OrderConfirmed) to $stream: what scripts/bench-worker.sh
# feeds the worker.
sub print_events {
    my ($n, $stream) = @_;
    my $time = now_rfc3339();
    binmode STDOUT;
    for (1 .. $n) {
        my $id = random_id();
        my @cmd = ('XADD', $stream // $Stream, '*',
                   event_fields($id, 'OrderConfirmed', $time, $id,
                                $JSON->encode({ checkoutId => $id,
                                                status => 'confirmed' })));
        print '*' . @cmd . "\r\n",
              map { '$' . length($_) . "\r\n$_\r\n" } @cmd;
    }
}

# The checkout state hash of a subject ({} when there is none).
sub state_of { CheckoutRedis::hgetall("checkout:$_[0]") }

# XPENDING extended: ([id, consumer, idle_ms, deliveries], ...).
sub pending {
    my ($stream, $group) = @_;
    my ($r, $err) = CheckoutRedis::cmd_err('XPENDING', $stream // $Stream,
                                           $group, '-', '+', 1000);
    return () if $err;
    return @{ $r || [] };
}

# The dead letters, oldest first: ([id, {fields}, [name, value, ...]], ...).
sub dlq {
    my ($stream) = @_;
    my $r = CheckoutRedis::cmd('XRANGE', $stream // $Dlq, '-', '+');
    return map { [ $_->[0], { @{ $_->[1] } }, $_->[1] ] } @$r;
}

# The dead letter of a stream entry (by its original id), or undef.
sub dead_letter_of {
    my ($entry) = @_;
    my ($dl) = grep { ($_->[1]{original_id} // '') eq $entry } dlq();
    return $dl;
}

sub done_key { "checkout:worker:done:$_[0]:$_[1]" }

# The rx option NAME (default: status) an event was made with.
sub status_of {
    my ($ev, $name) = @_;
    my %f = @{ $ev->{fields} };
    my $d = eval { JSON::PP->new->decode($f{data}) };
    return ref $d eq 'HASH' && ref $d->{rx} eq 'HASH'
        ? $d->{rx}{ $name // 'status' } : undef;
}

# Epoch seconds of "YYYY-MM-DDTHH:MM:SS[.fff]Z" (undef if not that).
sub parse_time {
    my ($s) = @_;
    my ($y, $mo, $d, $h, $mi, $sec, $frac) = ($s // '') =~
        /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z$/ or return undef;
    require Time::Local;
    my $t = eval { Time::Local::timegm($sec, $mi, $h, $d, $mo - 1, $y) };
    return defined $t ? $t + ($frac // 0) : undef;
}

# The entries of a stream as [id, {fields}].
sub entries { [ CheckoutRedis::xrange($_[0] // $Stream) ] }

package CheckoutWorker::Conn;

# A blocking RESP client for the admin port (one connection), with raw
# access for the bad-input tests.

use Carp qw(croak);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use IO::Select ();
use IO::Socket::INET ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);

sub new {
    my ($class, $port, $timeout) = @_;
    $timeout //= 10;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp',
                                     Timeout => $timeout)
        or die "cannot connect to the admin port $port: $!\n";
    $sock->blocking(0);
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    return bless { sock => $sock, buf => '', timeout => $timeout }, $class;
}

sub encode {
    my (@args) = @_;
    my $out = '*' . @args . "\r\n";
    for my $a (@args) {
        my $b = "$a";
        utf8::encode($b) if utf8::is_utf8($b);
        $out .= '$' . length($b) . "\r\n$b\r\n";
    }
    return $out;
}

# Still open and with nothing unasked-for to read.
sub usable {
    my ($self) = @_;
    return $self->{sock} && !IO::Select->new($self->{sock})->can_read(0);
}

sub cmd {
    my ($self, @args) = @_;
    $self->send_raw(encode(@args));
    return $self->read_reply;
}

# Writes bytes; false when the peer closed (EPIPE, reset).
sub send_raw {
    my ($self, $bytes) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $deadline = time + $self->{timeout};
    my $sel = IO::Select->new($self->{sock});
    while (length $bytes) {
        die "write timed out\n" unless $sel->can_write(_left($deadline));
        my $n = syswrite $self->{sock}, $bytes;
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            return 0;
        }
        substr $bytes, 0, $n, '';
    }
    return 1;
}

# One reply; dies on a timeout or when the connection closes first.
sub read_reply {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // $self->{timeout});
    my $line = $self->_line($deadline);
    my ($t, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest if $t eq '+';
    return { error => $rest } if $t eq '-';
    return 0 + $rest if $t eq ':';
    if ($t eq '$') {
        return undef if $rest < 0;
        $self->_fill($deadline) while length $self->{buf} < $rest + 2;
        my $d = substr $self->{buf}, 0, $rest + 2, '';
        return substr $d, 0, $rest;
    }
    if ($t eq '*') {
        return undef if $rest < 0;
        return [ map { $self->read_reply($timeout) } 1 .. $rest ];
    }
    die "unexpected reply line '$line'\n";
}

# Whether the server closes the connection within $timeout s (reading and
# dropping whatever comes first).
sub closed_within {
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout;
    my $sel = IO::Select->new($self->{sock});
    while (time < $deadline) {
        next unless $sel->can_read(_left($deadline));
        my $n = sysread $self->{sock}, my $junk, 65536;
        return 1 if defined $n && $n == 0;
        return 1 if !defined $n && $! != EAGAIN && $! != EINTR
                    && $! != EWOULDBLOCK;
    }
    return 0;
}

sub disconnect {
    my ($self) = @_;
    CORE::close($self->{sock}) if $self->{sock};
    undef $self->{sock};
}

sub _line {
    my ($self, $deadline) = @_;
    my $e;
    $self->_fill($deadline) while ($e = index $self->{buf}, "\r\n") < 0;
    my $l = substr $self->{buf}, 0, $e + 2, '';
    return substr $l, 0, $e;
}

sub _fill {
    my ($self, $deadline) = @_;
    my $sel = IO::Select->new($self->{sock});
    while (1) {
        die "timed out\n" unless $sel->can_read(_left($deadline));
        my $n = sysread $self->{sock}, $self->{buf}, 65536, length $self->{buf};
        return if $n;
        die "connection closed\n" if defined $n;
        next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
        die "read: $!\n";
    }
}

sub _left {
    my $l = $_[0] - time;
    return $l > 0.001 ? $l : 0.001;
}

1;
