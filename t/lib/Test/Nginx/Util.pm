package Test::Nginx::Util;

# The nginx side of the project's Test::Nginx runner: settings, nginx.conf
# generation, the nginx process (start, readiness, stop), error log access and
# valgrind reports.  Test::Nginx::Socket (the HTTP client and the checks) is
# built on it.  See the POD in Socket.pm for what is supported.

use strict;
use warnings;

use Carp ();
use Exporter 'import';
use Fcntl qw(:flock);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use IO::Handle ();
use POSIX qw(WNOHANG);
use Test::LongString;    # is_string
use Test::More ();
use Time::HiRes qw(sleep time);

use CheckoutProc ();

our @EXPORT = qw(
    $ServerPort $ServerPortForClient $ServerName $ServerAddr $ServRoot
    $HtmlDir $ErrLogFile $AccLogFile $ConfFile
    $RepeatEach $NoShuffle $NoLongString $CheckAccumErrLog $NoClean
    $UseValgrind @BlockPreprocessors
    repeat_each workers worker_connections master_on master_off
    master_process_enabled log_level no_shuffle no_root_location
    check_accum_error_log no_long_string env_to_nginx timeout server_name
    server_port server_port_for_client server_root html_dir
    add_block_preprocessor add_cleanup_handler bail_out is_str
    free_port parse_time expand_env_in_text nginx_version
    setup_server_root write_user_files write_config_file
    start_nginx stop_nginx error_log_data access_log_data
    whole_error_log valgrind_errors cleanup
);

# ---- settings (CPAN names and defaults unless noted) -------------------------

our $RepeatEach           = 1;
our $Workers              = 1;
# CPAN's default is 64; the suites fire dozens of concurrent requests, each
# with subrequests and upstream connections.
our $WorkerConnections    = 1024;
our $LogLevel             = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $NoRootLocation       = 0;
our $NoShuffle            = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $CheckAccumErrLog     = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $NoLongString;
our $NoClean              = $ENV{TEST_NGINX_NO_CLEAN};
our $Timeout              = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep       = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $UseValgrind          = $ENV{TEST_NGINX_USE_VALGRIND};
our $LoadModules          = $ENV{TEST_NGINX_LOAD_MODULES} // '';
our $ServerName           = 'localhost';
our $ServerAddr           = '127.0.0.1';
our $NginxBinary          = $ENV{TEST_NGINX_BINARY} || find_nginx();

# A "definitely lost" valgrind record fails a block only when one of its stack
# frames is ours: Debian's nginx leaks a little at exit by design.
our $LeakFramePattern = qr/ngx_(?:http_)?checkout/;

# How long nginx may take to listen, and to exit after SIGQUIT.
our $StartBound    = 10;
our $StopBound     = 5;
our $ValgrindBound = 60;

our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers);

# ---- ports -------------------------------------------------------------------

# A TCP port nobody listens on, below the kernel's ephemeral range so that no
# outgoing connection (nginx's own upstream connections, or another suite's)
# can occupy it between two nginx restarts, never the same twice in one
# process: CheckoutProc's, which the suites' helpers use too.  Project-only:
# CPAN has no such function.
sub free_port {
    return eval { CheckoutProc::free_port() }
        // bail_out("cannot find a free TCP port");
}

# A free port per test file by default, so that `prove -j` runs do not clash.
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                  || free_port();
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;

# Set before the suite's own code runs: it may read it at top level, and
# `--- request eval` sections are evaluated before the first block starts.
$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;

# ---- server root -------------------------------------------------------------

# t/servroot-<name of the .t file> under the current directory (CPAN uses one
# t/servroot), so that test files running in parallel have their own.
sub default_servroot {
    my $id = File::Spec->abs2rel(File::Spec->rel2abs($0));
    $id = (File::Spec->splitpath($id))[2] if $id =~ /^\.\./;
    $id =~ s{^t/}{};
    $id =~ s{\.t$}{};
    $id =~ s{[^\w.-]+}{-}g;
    return File::Spec->rel2abs("t/servroot-$id");
}

# Two runs of the same test file at the same time (two people testing in one
# checkout) must not share a server root: the first run holds a lock on it, a
# second one gets a server root of its own, removed when it exits.
my ($ServRootLock, $PrivateServRoot);

sub claim_servroot {
    my ($root) = @_;
    make_path($root);
    open $ServRootLock, '>', "$root/lock"
        or bail_out("cannot create $root/lock: $!");
    return $root if flock $ServRootLock, LOCK_EX | LOCK_NB;

    $PrivateServRoot = "$root-$$";
    make_path($PrivateServRoot);
    return $PrivateServRoot;
}

our $ServRoot    = claim_servroot(File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT}
                                                      || default_servroot()));
our $LogDir      = "$ServRoot/logs";
our $ErrLogFile  = "$LogDir/error.log";
our $AccLogFile  = "$LogDir/access.log";
our $PidFile     = "$LogDir/nginx.pid";
our $ValgrindLog = "$LogDir/valgrind.log";
our $HtmlDir     = "$ServRoot/html";
our $ConfDir     = "$ServRoot/conf";
our $ConfFile    = "$ConfDir/nginx.conf";

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

# ---- setters and getters exported to the suites (CPAN API) -------------------

sub repeat_each { $RepeatEach = shift if @_; return $RepeatEach }
sub workers { $Workers = shift if @_; return $Workers }
sub worker_connections { $WorkerConnections = shift if @_; return $WorkerConnections }
sub master_on { $MasterProcessEnabled = 'on' }
sub master_off { $MasterProcessEnabled = 'off' }
sub master_process_enabled {
    $MasterProcessEnabled = shift() ? 'on' : 'off' if @_;
    return $MasterProcessEnabled;
}
sub log_level { $LogLevel = shift if @_; return $LogLevel }
sub no_shuffle { $NoShuffle = 1 }
sub no_root_location { $NoRootLocation = 1 }
sub check_accum_error_log { $CheckAccumErrLog = 1 }
sub no_long_string { $NoLongString = 1 }
sub timeout { $Timeout = shift if @_; return $Timeout }
sub server_name { $ServerName = shift if @_; return $ServerName }
sub server_port {
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort = shift if @_;
    return $ServerPort;
}
sub server_port_for_client {
    $ServerPortForClient = shift if @_;
    return $ServerPortForClient;
}
sub server_root { $ServRoot }
sub html_dir { $HtmlDir }

sub env_to_nginx {
    for my $v (@_) {
        Carp::croak("env_to_nginx: bad argument value: $v")
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# Preprocessors added last run first, as in CPAN.
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler { unshift @CleanupHandlers, shift }

sub bail_out {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# String comparison that honours no_long_string() and accepts a qr// as the
# expected value.
sub is_str {
    my ($got, $expected, $desc) = @_;
    return Test::More::like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return is_string($got, $expected, $desc);
}

# "1.5" and "1.5s" are seconds, "50ms" milliseconds.
sub parse_time {
    my ($t) = @_;
    return undef unless defined $t;
    return $1 / 1000 if $t =~ /^\s*([\d.]+)\s*ms\s*$/;
    return $1 if $t =~ /^\s*([\d.]+)\s*s?\s*$/;
    return $t;
}

# ---- nginx binary ------------------------------------------------------------

sub find_nginx {
    for my $dir (split(/:/, $ENV{PATH} // ''), '/usr/sbin') {
        return "$dir/nginx" if $dir ne '' && -f "$dir/nginx" && -x _;
    }
    return 'nginx';
}

my $NginxVersion;

# nginx's version as CPAN canonicalises it (1.22.1 -> "1.022001").
sub nginx_version {
    return $NginxVersion if defined $NginxVersion;
    my $out = `$NginxBinary -V 2>&1`;
    bail_out("cannot run $NginxBinary -V: $out") if $? != 0;
    $out =~ m{nginx/(\d+)\.(\d+)\.(\d+)}
        or bail_out("cannot parse the output of $NginxBinary -V: $out");
    return $NginxVersion = sprintf "%d.%03d%03d", $1, $2, $3;
}

# ---- nginx.conf --------------------------------------------------------------

# $TEST_NGINX_FOO is replaced from %ENV; $TEST_NGINX_RAND_PORT_<n> by a free
# port that stays the same within one block (CPAN semantics).
sub expand_env_in_text {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{env_value($1, $name, $rand_ports)}ge;
    return $text;
}

sub env_value {
    my ($var, $name, $rand_ports) = @_;
    return $rand_ports->{$var} //= free_port()
        if $var =~ /^TEST_NGINX_RAND_PORT_\d+$/;
    bail_out("$name - No environment $var defined.\n") unless defined $ENV{$var};
    return $ENV{$var};
}

# A fresh server root for every block: logs start empty, so the checks see
# this block's log only.
sub setup_server_root {
    make_path($ServRoot);
    stop_leftover_nginx();
    remove_tree($ConfDir, $LogDir, $HtmlDir, glob("$ServRoot/*_temp"));
    make_path($ConfDir, $LogDir, $HtmlDir);

    open my $out, '>', "$HtmlDir/index.html"
        or bail_out("cannot write $HtmlDir/index.html: $!");
    print $out '<html><head><title>It works!</title></head>'
               . '<body>It works!</body></html>';
    close $out;
}

# A server left running on purpose by TEST_NGINX_NO_CLEAN in an earlier run.
# Only an nginx started with this very nginx.conf is touched.
sub stop_leftover_nginx {
    open my $in, '<', $PidFile or return;
    my ($pid) = (scalar <$in> // '') =~ /(\d+)/;
    close $in;
    return unless $pid && open my $cmd, '<', "/proc/$pid/cmdline";
    my @argv = split /\0/, do { local $/; <$cmd> };
    return unless grep { $_ eq $ConfFile } @argv;

    kill 'QUIT', $pid;
    my $deadline = time + $StopBound;
    sleep 0.01 while kill(0, $pid) && time < $deadline;
    kill 'KILL', $pid if kill 0, $pid;
}

# --- user_files: ">>> name [mtime]" headers followed by the file's body, or an
# eval'ed [[name, body, mtime], ...]; relative names go under html/.
sub write_user_files {
    my ($block, $rand_ports) = @_;
    my $name  = $block->name;
    my $files = $block->user_files;
    return unless $files;

    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, '', $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - --- user_files must be a string or an array");
    }

    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        make_path($1) if $path =~ m{(.*)/} && !-d $1;

        open my $out, '>', $path or bail_out("$name - cannot write $path: $!");
        binmode $out;
        print $out expand_env_in_text($body // '', $name, $rand_ports);
        close $out;

        if ($date) {
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - cannot set the mtime of $path");
        }
    }
}

sub write_config_file {
    my ($block, $rand_ports, $master) = @_;
    my $name = $block->name;

    my %sec = map { $_ => expand_env_in_text(scalar $block->$_, $name, $rand_ports) // '' }
              qw(main_config http_config config post_main_config);

    my $log_level   = $block->log_level || $LogLevel;
    my $server_name = $block->server_name // $ServerName;

    my $main = '';
    $main .= "load_module $_;\n" for split ' ', $LoadModules;
    $main .= "env $_;\n" for map { /\s/ ? "'$_'" : $_ } @EnvToNginx;
    # Workers drop privileges to "nobody" otherwise, and could not write
    # to the server root.
    $main .= "user root;\n" if $> == 0;

    # Debian's compiled-in temp paths live under /var/lib/nginx, which need
    # not exist (nor be writable); http_config may set its own.
    my $temp = '';
    for my $kind (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if $sec{http_config} =~ /\b${kind}_temp_path\b/;
        $temp .= "    ${kind}_temp_path $ServRoot/${kind}_temp;\n";
    }

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    open my $out, '>', $ConfFile or bail_out("cannot write $ConfFile: $!");
    print $out <<"_EOC_";
# $name
worker_processes  $Workers;
daemon off;
master_process $master;
error_log $ErrLogFile $log_level;
pid       $PidFile;
$main
$sec{main_config}

http {
    access_log $AccLogFile;
    default_type text/plain;
    keepalive_timeout  68;
$temp
$sec{http_config}

    server {
        listen          $ServerPort;
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin test case config...
$sec{config}
        # End test case config.

$root_location    }
}

$sec{post_main_config}

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
_EOC_
    close $out;
}

# ---- the nginx process -------------------------------------------------------

# nginx always runs in the foreground as a child of this process, in its own
# process group: we know its pid without a pid file, see at once when it dies,
# and can stop it with its workers.
my ($NginxPid, $NginxStopBound);
my $OwnerPid = $$;

sub valgrind_command {
    my @opts = $UseValgrind =~ /^\d+$/
             ? qw(--tool=memcheck --leak-check=full --show-possibly-lost=no)
             : split ' ', $UseValgrind;
    push @opts, '--num-callers=30' unless grep /^--num-callers=/, @opts;
    for my $supp ('t/valgrind.suppress', 'valgrind.suppress') {
        if (-f $supp) {
            push @opts, '--suppressions=' . File::Spec->rel2abs($supp);
            last;
        }
    }
    return ('valgrind', @opts, "--log-file=$ValgrindLog");
}

# Starts nginx and waits until it listens on $ServerPort or exits.  Returns
# {listening => 1}, {exited => 1, status => $?} or {error => message}.
sub start_nginx {
    my ($valgrind) = @_;

    # Otherwise the readiness check below could not tell our nginx from
    # whatever already listens there.
    return { error => "port $ServerPort is already in use" }
        unless CheckoutProc::port_is_free($ServerPort);

    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    unshift @cmd, valgrind_command() if $valgrind;

    # Unflushed output would otherwise be written twice, once by the child.
    STDOUT->flush;
    STDERR->flush;

    my $pid = fork // bail_out("fork failed: $!");
    if ($pid == 0) {
        setpgrp(0, 0);
        open STDIN,  '<',  '/dev/null';
        open STDOUT, '>',  '/dev/null';
        # Debian's nginx reports startup errors (bad config, bind failures)
        # on stderr: they belong in the block's error log view.
        open STDERR, '>>', $ErrLogFile;
        exec { $cmd[0] } @cmd or print STDERR "cannot exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }

    $NginxPid = $pid;
    $NginxStopBound = $valgrind ? $ValgrindBound : $StopBound;

    my $bound = $valgrind ? $ValgrindBound : $StartBound;
    my $deadline = time + $bound;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            undef $NginxPid;
            return { exited => 1, status => $? };
        }
        return { listening => 1 } if is_listening($pid, $ServerPort);
        sleep 0.005;
    }

    return { error => "nginx did not listen on port $ServerPort "
                      . "within $bound seconds" };
}

# Whether process $pid holds a socket listening on TCP port $port.  Read from
# /proc rather than by connecting, which would add lines to error.log.
sub is_listening {
    my ($pid, $port) = @_;

    my %inodes;
    opendir my $dh, "/proc/$pid/fd" or return 0;
    for my $fd (readdir $dh) {
        my $link = readlink("/proc/$pid/fd/$fd") // next;
        $inodes{$1} = 1 if $link =~ /^socket:\[(\d+)\]$/;
    }

    my $suffix = sprintf ':%04X', $port;
    for my $table ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $table or next;
        while (<$in>) {
            my @f = split ' ';
            return 1 if @f > 9 && $f[3] eq '0A'
                        && substr($f[1], -5) eq $suffix && $inodes{$f[9]};
        }
    }
    return 0;
}

# SIGQUIT (graceful), then SIGKILL to the process group after a bound.
# Returns undef when no nginx runs, else {status => $?} plus
# early => 1 when nginx had already exited by itself,
# forced => 1 when it had to be killed.
sub stop_nginx {
    my $pid = $NginxPid // return undef;
    my %result;

    if (waitpid($pid, WNOHANG) == $pid) {
        %result = (status => $?, early => 1);
    } else {
        kill 'QUIT', $pid;
        my $deadline = time + $NginxStopBound;
        my $reaped;
        until (($reaped = waitpid($pid, WNOHANG) == $pid) || time > $deadline) {
            sleep 0.005;
        }
        if (!$reaped) {
            kill 'KILL', -$pid;
            waitpid($pid, 0);
            $result{forced} = 1;
        }
        $result{status} = $?;
    }

    # Only now: a signal arriving meanwhile makes cleanup() stop it again.
    undef $NginxPid;
    return \%result;
}

sub cleanup {
    # A process forked by a suite (a mock backend, say) inherits our END
    # block and signal handlers; only the process that runs the suite owns
    # nginx and the cleanup handlers.
    return unless $$ == $OwnerPid;

    my @handlers = @CleanupHandlers;
    @CleanupHandlers = ();
    $_->() for @handlers;

    stop_nginx() unless $NoClean;
}

for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub {
        cleanup();
        $SIG{$sig} = 'DEFAULT';
        kill $sig, $$;
    };
}

END {
    local $?;    # keep the test's exit status
    cleanup();
    remove_tree($PrivateServRoot)
        if $PrivateServRoot && $$ == $OwnerPid && !$NoClean;
}

# ---- logs --------------------------------------------------------------------

# Where the next error_log_data() starts reading (0 = the whole log).
our $ErrLogFilePos = 0;

# The lines of error.log written since the previous call (all of it with
# check_accum_error_log), after a short pause for log-phase lines written
# once the response is out.
sub error_log_data {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos;
    my @lines = <$in>;
    $ErrLogFilePos = tell $in unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub whole_error_log {
    open my $in, '<', $ErrLogFile or return [];
    return [<$in>];
}

sub access_log_data {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or return [];
    return [<$in>];
}

# Valgrind records (without the ==pid== prefixes) that must fail the block:
# memory errors anywhere, "definitely lost" leaks only with a frame of ours.
sub valgrind_errors {
    open my $in, '<', $ValgrindLog or return ();

    my (@records, @cur);
    while (my $line = <$in>) {
        next unless $line =~ s/^==\d+== ?//;
        if ($line =~ /^\s*$/) {
            push @records, [@cur] if @cur;
            @cur = ();
        } else {
            push @cur, $line;
        }
    }
    push @records, [@cur] if @cur;

    my $memory_error = qr/^(?:Invalid\ (?:read|write|free)|Mismatched\ free
                             |Conditional\ jump|Use\ of\ uninitialised
                             |Syscall\ param\ .*\ uninitialised
                             |Source\ and\ destination\ overlap
                             |Process\ terminating)/x;
    return map { join '', @$_ }
           grep {
               $_->[0] =~ $memory_error
               || ($_->[0] =~ /definitely lost/
                   && grep { $_ =~ $LeakFramePattern } @$_)
           } @records;
}

1;
