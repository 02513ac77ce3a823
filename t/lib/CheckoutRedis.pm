package CheckoutRedis;

# A private redis-server for the ngx_checkout suites (t/*.t), and a small
# blocking RESP2 client to look at what the module wrote there.
#
# Core Perl only and no use of the runner's internals, so a suite works the
# same under the project's runner (t/lib/Test/Nginx/Socket.pm) and under
# CPAN's Test::Nginx:
#
#     use Test::Nginx::Socket 'no_plan';
#     use FindBin ();
#     BEGIN { push @INC, "$FindBin::Bin/lib" }
#     use CheckoutRedis ();
#     CheckoutRedis::start();      # before run_tests: configs expand the port
#
# Server (one per test file):
#   start(%opts)      starts redis-server on 127.0.0.1, a free port below the
#                     ephemeral range, and a unix socket, in a fresh
#                     /tmp/checkout-redis-*/ dir; waits until PING answers;
#                     sets $ENV{TEST_NGINX_REDIS_PORT} and
#                     $ENV{TEST_NGINX_REDIS_UNIX}; returns the port.
#                     Options: requirepass => 'secret' (cmd() then AUTHs),
#                     args => ['--maxclients', 10] (more redis-server options)
#   stop([save => 1]) TERM (KILL after $StopBound s), reaped; data is lost,
#                     unless save => 1: SAVE first, into dir()/dump.rdb, which
#                     the next restart(keep => 1) loads
#   restart([keep => 1])
#                     stop() if running, then start again on the SAME port,
#                     unix socket and dir, empty (nothing is persisted); with
#                     keep => 1 the data survives: a running server SAVEs
#                     before it stops, and the new one loads dump.rdb
#   save()            SAVE (an RDB snapshot in dir(), for restart(keep => 1))
#   free_port()       CheckoutProc::free_port(): a TCP port nobody listens on
#   pause()/resume()  SIGSTOP/SIGCONT: the kernel still accepts connections,
#                     nothing is answered
#   client_pause($ms [, $mode])   CLIENT PAUSE $ms ALL (or WRITE)
#   port(), pid(), dir(), log_tail([$lines])
# The server is always stopped, and its dir removed, when the test file ends,
# dies, or gets INT/TERM/HUP (CheckoutProc::at_exit).  Should the test
# process be SIGKILLed, the kernel kills the server too (CheckoutProc::spawn);
# only the dir is left in /tmp then.
#
# Client (one cached connection, reopened when the server closed it):
#   cmd(@args)        one command; the reply as: simple string -> string,
#                     integer -> number, bulk -> string or undef, array ->
#                     arrayref (nested; a nil array -> undef, an error inside
#                     an array -> { error => 'ERR ...' }).  Dies on an error
#                     reply, a timeout ($Timeout, 5 s) or a broken connection.
#   cmd_err(@args)    ($reply, undef) or (undef, $error) instead of dying:
#                     $error is the error reply ("ERR ...", "WRONGTYPE ...")
#                     or a transport failure ("... timed out after 5 s")
#   flush()           FLUSHALL
#   xrange($stream [, $start, $end])  ([$id, {field => value, ...}], ...)
#   xlen($stream), hgetall($key) -> hashref
#   clients()         CLIENT LIST, parsed: ({id, addr, name, cmd, ...}, ...)
#   client_ids($name) the ids of the connections named $name (CLIENT SETNAME)
#   kill_clients($name)  CLIENT KILL ID of each connection named $name;
#                     returns the ids killed
#   wait_for(sub { ... } [, $timeout])  CheckoutProc::wait_for()
# Arguments are sent as bytes (character strings UTF-8 encoded); replies are
# returned as bytes.  A command that timed out (for instance during pause())
# is still in the server's input and runs when the server resumes.

use strict;
use warnings;

use CheckoutProc ();
use Carp qw(croak);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use IO::Select ();
use IO::Socket::INET ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

our $Binary     = 'redis-server';
our $Timeout    = 5;    # seconds per command: connect, send, whole reply
our $StartBound = 5;    # until the new server answers PING
our $StopBound  = 5;    # from TERM to KILL

# pid, port, dir, unix, log, requirepass, args of the current server.
my %Server;

my $Conn;    # { sock, buf, pid }
my $AtExit;

# ---- server ----------------------------------------------------------------

sub start {
    my (%opts) = @_;
    my @unknown = grep { !/^(?:requirepass|args)$/ } keys %opts;
    croak "CheckoutRedis::start: unknown option(s) @unknown" if @unknown;
    croak "CheckoutRedis::start: args must be an array reference"
        if defined $opts{args} && ref $opts{args} ne 'ARRAY';
    croak "CheckoutRedis::start: already running (use restart())"
        if $Server{pid};

    CheckoutProc::at_exit(\&_cleanup) unless $AtExit++;
    # The dir of a server stopped earlier: this one starts afresh.
    remove_tree($Server{dir}) if $Server{dir};

    my $dir = tempdir('checkout-redis-XXXXXXXX', DIR => '/tmp');
    %Server = (
        dir         => $dir,
        unix        => "$dir/redis.sock",
        log         => "$dir/redis.log",
        requirepass => $opts{requirepass},
        args        => $opts{args} || [],
    );

    # Another test file may bind the port we picked before our server does.
    for my $attempt (1 .. 5) {
        $Server{port} = CheckoutProc::free_port();
        last if _launch();
        croak "CheckoutRedis::start: no free port after $attempt attempts"
            if $attempt == 5;
    }

    $ENV{TEST_NGINX_REDIS_PORT} = $Server{port};
    $ENV{TEST_NGINX_REDIS_UNIX} = $Server{unix};
    return $Server{port};
}

sub stop {
    my (%opts) = @_;
    my @unknown = grep { $_ ne 'save' } keys %opts;
    croak "CheckoutRedis::stop: unknown option(s) @unknown" if @unknown;
    my $pid = $Server{pid} or return;
    save() if $opts{save};
    _drop_connection();

    # Its process group: with any child it forked (BGSAVE).
    CheckoutProc::stop($pid, bound => $StopBound);
    undef $Server{pid};
}

sub restart {
    my (%opts) = @_;
    my @unknown = grep { $_ ne 'keep' } keys %opts;
    croak "CheckoutRedis::restart: unknown option(s) @unknown" if @unknown;
    croak "CheckoutRedis::restart: never started" unless $Server{dir};
    stop(save => ($opts{keep} && $Server{pid}) ? 1 : 0);
    # An empty restart must not load a snapshot an earlier save() left.
    unlink "$Server{dir}/dump.rdb" unless $opts{keep};
    _launch()
        or croak "CheckoutRedis::restart: port $Server{port} is taken:\n"
                 . log_tail();
    return $Server{port};
}

sub save { cmd('SAVE') }

sub free_port { CheckoutProc::free_port() }

sub pause  { kill 'STOP', _running_pid() }
sub resume { kill 'CONT', _running_pid() }

sub client_pause {
    my ($ms, $mode) = @_;
    return cmd('CLIENT', 'PAUSE', $ms, $mode // 'ALL');
}

sub port { $Server{port} }
sub pid  { $Server{pid} }
sub dir  { $Server{dir} }

sub log_tail {
    my ($lines) = @_;
    $lines ||= 20;
    my $log = $Server{log} or return '';
    open my $in, '<', $log or return '';
    my @all = <$in>;
    splice @all, 0, -$lines if @all > $lines;
    return join '', @all;
}

sub _running_pid {
    return $Server{pid} || croak "CheckoutRedis: redis-server is not running";
}

# Starts the server on $Server{port} and waits until it answers.  Returns 0
# when it could not bind the port, dies on any other failure.
sub _launch {
    my $log_start = -s $Server{log} // 0;
    _spawn();

    my $deadline = time + $StartBound;
    until (_answers()) {
        if (defined CheckoutProc::reap($Server{pid})) {
            undef $Server{pid};
            my $log = _log_since($log_start);
            return 0 if $log =~ /Address already in use/;
            croak "CheckoutRedis: redis-server exited at start:\n$log";
        }
        if (time > $deadline) {
            my $log = log_tail();
            stop();
            croak "CheckoutRedis: redis-server did not answer PING within "
                  . "$StartBound s:\n$log";
        }
        sleep 0.02;
    }
    return 1;
}

sub _answers {
    my ($reply) = do { local $Timeout = 0.5; cmd_err('PING') };
    return defined $reply && $reply eq 'PONG' && -S $Server{unix};
}

sub _spawn {
    my @cmd = ($Binary,
        '--port', $Server{port}, '--bind', '127.0.0.1',
        '--protected-mode', 'yes',
        '--unixsocket', $Server{unix}, '--unixsocketperm', '700',
        '--dir', $Server{dir}, '--logfile', $Server{log},
        '--save', '', '--appendonly', 'no', '--daemonize', 'no',
        '--enable-debug-command', 'local',
        (defined $Server{requirepass}
            ? ('--requirepass', $Server{requirepass}) : ()),
        @{ $Server{args} });

    # Errors before the log file is set up (bad options) go to its output.
    $Server{pid} = CheckoutProc::spawn(exec => \@cmd, stdout => $Server{log});
}

sub _log_since {
    my ($offset) = @_;
    open my $in, '<', $Server{log} or return '';
    seek $in, $offset, 0;
    local $/;
    return scalar(<$in>) // '';
}

sub _cleanup {
    stop();
    remove_tree($Server{dir}) if $Server{dir};
    %Server = ();
}

# ---- client ----------------------------------------------------------------

sub cmd {
    my ($reply, $err) = _call(@_);
    croak "CheckoutRedis: $_[0]: $err" if defined $err;
    return $reply;
}

sub cmd_err {
    my @result = eval { _call(@_) };
    return @result if @result;
    (my $err = $@) =~ s/\n\z//;
    return (undef, $err);
}

sub flush { cmd('FLUSHALL') }

sub xrange {
    my ($stream, $start, $end) = @_;
    my $entries = cmd('XRANGE', $stream, $start // '-', $end // '+');
    return map { [ $_->[0], { @{ $_->[1] } } ] } @$entries;
}

sub xlen { cmd('XLEN', $_[0]) }

sub clients {
    my $text = cmd('CLIENT', 'LIST') // '';
    my @out;
    for my $line (split /\r?\n/, $text) {
        next unless $line =~ /\S/;
        # "id=7 addr=127.0.0.1:5 ... name=x ... cmd=client|list ...": no
        # value holds a space (a name cannot)
        push @out, { map { /^([^=]+)=(.*)$/ ? ($1 => $2) : () }
                     split / /, $line };
    }
    return @out;
}

sub client_ids {
    my ($name) = @_;
    return map { $_->{id} } grep { ($_->{name} // '') eq $name } clients();
}

sub kill_clients {
    my ($name) = @_;
    my @ids = client_ids($name);
    cmd('CLIENT', 'KILL', 'ID', $_) for @ids;
    return @ids;
}

sub hgetall { return { @{ cmd('HGETALL', $_[0]) } } }

sub wait_for { CheckoutProc::wait_for(@_) }

# (reply, undef) or (undef, error reply); dies on transport failures, after
# dropping the connection: whatever it still carries is of no use.
sub _call {
    my @args = @_;
    croak "CheckoutRedis: no command" unless @args;
    croak "CheckoutRedis: undefined argument in @{[ $args[0] // '' ]}"
        if grep { !defined } @args;

    local $SIG{PIPE} = 'IGNORE';
    my $deadline = time + $Timeout;
    my $reply;
    eval {
        $reply = _exchange(_connection($deadline), \@args, $deadline);
        1;
    } or do {
        my $err = $@;
        _drop_connection();
        $err =~ s/\n\z//;
        die "CheckoutRedis: $args[0]: $err\n";
    };

    return (undef, $reply->{error}) if ref $reply eq 'HASH';
    return ($reply, undef);
}

sub _connection {
    my ($deadline) = @_;

    # Readable while idle means the server closed it (stopped, restarted,
    # killed) or sent what nobody asked for: start afresh.  A forked process
    # leaves its parent's connection alone.
    _drop_connection()
        if $Conn && ($Conn->{pid} != $$
                     || IO::Select->new($Conn->{sock})->can_read(0));
    return $Conn if $Conn;

    $Server{port} or die "redis-server was never started\n";
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $Server{port},
                                     Proto => 'tcp',
                                     Timeout => _left($deadline))
        or die "cannot connect to 127.0.0.1:$Server{port}: $!\n";
    $sock->blocking(0);
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    my $c = { sock => $sock, buf => '', pid => $$ };

    if (defined $Server{requirepass}) {
        my $r = _exchange($c, ['AUTH', $Server{requirepass}], $deadline);
        die "AUTH: $r->{error}\n" if ref $r eq 'HASH';
    }
    return $Conn = $c;
}

sub _drop_connection { undef $Conn }

sub _exchange {
    my ($c, $args, $deadline) = @_;

    my $out = '*' . @$args . "\r\n";
    for my $arg (@$args) {
        my $bytes = "$arg";
        utf8::encode($bytes) if utf8::is_utf8($bytes);
        $out .= '$' . length($bytes) . "\r\n$bytes\r\n";
    }

    while (length $out) {
        _wait_io($c->{sock}, 'can_write', $deadline);
        my $n = syswrite $c->{sock}, $out;
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            die "write failed: $!\n";
        }
        substr $out, 0, $n, '';
    }

    return _read_reply($c, $deadline);
}

# Error replies come back as { error => ... }, also inside arrays (EXEC).
sub _read_reply {
    my ($c, $deadline) = @_;
    my $line = _read_line($c, $deadline);
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));

    return $rest              if $type eq '+';
    return { error => $rest } if $type eq '-';
    return 0 + $rest          if $type eq ':';
    if ($type eq '$') {
        return undef if $rest < 0;
        return _read_bulk($c, $rest, $deadline);
    }
    if ($type eq '*') {
        return undef if $rest < 0;
        return [ map { _read_reply($c, $deadline) } 1 .. $rest ];
    }
    die "protocol error: unexpected reply line '$line'\n";
}

sub _read_line {
    my ($c, $deadline) = @_;
    my $end;
    _fill($c, $deadline) while ($end = index $c->{buf}, "\r\n") < 0;
    my $line = substr $c->{buf}, 0, $end + 2, '';
    return substr $line, 0, $end;
}

sub _read_bulk {
    my ($c, $len, $deadline) = @_;
    _fill($c, $deadline) while length $c->{buf} < $len + 2;
    my $data = substr $c->{buf}, 0, $len + 2, '';
    die "protocol error: bulk string without CRLF\n"
        unless substr($data, $len, 2, '') eq "\r\n";
    return $data;
}

sub _fill {
    my ($c, $deadline) = @_;
    while (1) {
        _wait_io($c->{sock}, 'can_read', $deadline);
        my $n = sysread $c->{sock}, $c->{buf}, 65536, length $c->{buf};
        return if $n;
        die "connection closed by the server\n" if defined $n;
        die "read failed: $!\n"
            unless $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
    }
}

# Waits until the socket is ready ($method: can_read or can_write); a signal
# interrupting select() just sends us round again.
sub _wait_io {
    my ($sock, $method, $deadline) = @_;
    my $select = IO::Select->new($sock);
    until ($select->$method(_left($deadline))) {
        die "timed out after $Timeout s\n" if time >= $deadline;
    }
}

sub _left {
    my ($deadline) = @_;
    my $left = $deadline - time;
    return $left > 0.001 ? $left : 0.001;
}

1;
