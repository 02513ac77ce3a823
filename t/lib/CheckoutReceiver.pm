package CheckoutReceiver;

# A real local HTTP/1.1 server for the checkout-worker suites (t/020-*.t):
# the "follow-up services" the worker delivers events to.
#
#     use CheckoutReceiver ();
#     my $rx = CheckoutReceiver->new;          # listening on 127.0.0.1:port
#     my $url = $rx->url('/flaky/2');          # http://127.0.0.1:PORT/flaky/2
#     ...
#     my @reqs = $rx->wait_for_requests(3, 10, '/flaky');
#
# The server is a process of its own (forked from the test), which forks
# again for every connection, so a slow or hanging request never holds up
# another one. It speaks HTTP/1.1 with keep-alive, reads Content-Length and
# chunked bodies and answers "Expect: 100-continue". Every request is
# appended as one JSON line to requests.log in its dir (flock'ed, so lines
# from concurrent connections never mix), before it is answered:
#   seq (unique: "PID.N"), time (epoch seconds, float), method, path (the
#   request target, query included), headers ({lowercased name => value},
#   repeated headers joined with ", "), body (the bytes), call (the number
#   of requests with this Idempotency-Key so far, this one included)
# and what became of it to replies.log (joined by requests()):
#   reply_time (taken just BEFORE the reply is written, so a request the
#   client sends once it has that reply always has a later time), status,
#   outcome: reply | hangup (the client closed while /hang) | write_failed
#
# Behaviour: the path is a chain of modifiers, applied together:
#   /ok               200 {} (also what an empty chain does)
#   /status/NNN       answer NNN (3xx: with a Location to /ok?redirected=1)
#   /flaky/N          503 for the first N requests per Idempotency-Key
#   /slow/MS          sleep MS milliseconds first
#   /hang             never answer: wait until the client closes
#   /json/NAME        the reply set with set_json(NAME, ...)
#   /effect           a 2xx reply applies the "effect" of its Idempotency-Key
#                     once: the first one creates a record, later ones find
#                     it (effects() counts how often each key was applied)
#   /switch/NAME      the status set with set_switch(NAME, NNN) (default 200)
#   /rx               nothing: for behaviour given by the body alone
# e.g. /slow/1500/effect. Any unknown segment: 404; to tell the URLs of
# several groups apart, give them a query string (/ok?audit, /ok?receipt)
# and filter with requests('/ok?audit').
# The same options also come from the query string (?slow=1500&flaky=1) and,
# for URLs under /rx only, from the request body: a JSON object whose "rx"
# member is an object of options overrides them, so one group URL can behave
# differently per event (the worker POSTs the event's data verbatim), while
# other groups' URLs (/ok, ...) ignore it. Options:
#   status, flaky, slow, hang, json, effect, switch as above;
#   slow_on, hang_on  only on these calls per Idempotency-Key (an array or
#                     "2,3"; default: every call)
#   reply             a JSON value: the body, with Content-Type
#                     application/json
#   content_type, body_raw
#                     the reply's Content-Type and raw body
#
# Methods: new(%opts), port, url($path), dir, pid, requests([$prefix]),
# count([$prefix]), wait_for_requests($n [, $timeout, $prefix]),
# wait_for(sub {...} [, $timeout]), set_json($name, %reply),
# set_switch($name, $status), effects(), calls($key), stop().
# The server and its connections are killed and reaped by stop(), at the end
# of the test, when it dies, or on INT/TERM/HUP (CheckoutProc::at_exit); and
# should the test be SIGKILLed, the kernel kills them too
# (CheckoutProc::spawn).

use strict;
use warnings;

use CheckoutProc ();
use Carp qw(croak);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Fcntl qw(:flock O_WRONLY O_CREAT O_EXCL);
use File::Path qw(remove_tree make_path);
use File::Temp qw(tempdir);
use IO::Select ();
use IO::Socket::INET ();
use JSON::PP ();
use Socket qw(IPPROTO_TCP TCP_NODELAY SOMAXCONN);
use Time::HiRes qw(time sleep);

our $MaxHeader = 65536;            # bytes of a request head
our $MaxBody   = 16 * 1024 * 1024;
our $HangMax   = 600;              # seconds a /hang waits at most
our $StopBound = 5;

# Bytes in, bytes out: body and header bytes travel as \u00XX escapes.
my $JSON = JSON::PP->new->ascii->canonical->allow_nonref;

my %Live;          # pid => receiver, for the cleanup at exit
my $AtExit;

# ---- the test's side -------------------------------------------------------

sub new {
    my ($class, %opts) = @_;
    my @unknown = grep { $_ ne 'dir' } keys %opts;
    croak "CheckoutReceiver->new: unknown option(s) @unknown" if @unknown;

    CheckoutProc::at_exit(\&_cleanup) unless $AtExit++;

    my $own = !defined $opts{dir};
    my $dir = $opts{dir} // tempdir('checkout-rx-XXXXXXXX', DIR => '/tmp');
    make_path("$dir/state");
    for my $f (qw(requests.log replies.log effects.log state/lock)) {
        open my $fh, '>', "$dir/$f" or croak "CheckoutReceiver: $dir/$f: $!";
    }

    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                       LocalPort => 0, Proto => 'tcp',
                                       Listen => SOMAXCONN, ReuseAddr => 1)
        or croak "CheckoutReceiver: cannot listen on 127.0.0.1: $!";
    my $port = $listen->sockport;

    my $self = bless { dir => $dir, port => $port, own_dir => $own,
                       owner => $$ }, $class;

    my $pid = CheckoutProc::spawn(run => sub { $self->_server($listen) });
    close $listen;
    $self->{pid} = $pid;
    $Live{$pid} = $self;
    return $self;
}

sub port { $_[0]{port} }
sub dir  { $_[0]{dir} }
sub pid  { $_[0]{pid} }

sub url {
    my ($self, $path) = @_;
    $path //= '/ok';
    $path = "/$path" unless $path =~ m{^/};
    return "http://127.0.0.1:$self->{port}$path";
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    delete $Live{$pid};
    # The connections' processes are in the server's group.
    CheckoutProc::stop($pid, bound => $StopBound);
    remove_tree($self->{dir}) if $self->{own_dir} && !$self->{keep};
}

# Keep the dir after stop() (a suite that failed, to look at).
sub keep { $_[0]{keep} = 1 }

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->stop if $self->{pid} && $$ == $self->{owner};
}

# The requests whose path starts with $prefix (all without one), in the
# order they arrived, each a hash: seq, time, method, path, headers, body,
# call, and reply_time/status/outcome once answered.
sub requests {
    my ($self, $prefix) = @_;
    my @reqs = _read_json_lines("$self->{dir}/requests.log");
    my %reply = map { ($_->{seq} => $_) }
                _read_json_lines("$self->{dir}/replies.log");
    @reqs = grep { index($_->{path}, $prefix) == 0 } @reqs
        if defined $prefix;
    for my $r (@reqs) {
        my $done = $reply{ $r->{seq} } or next;
        $r->{$_} = $done->{$_} for qw(reply_time status outcome);
    }
    return sort { $a->{time} <=> $b->{time} } @reqs;
}

sub count { scalar(my @r = $_[0]->requests($_[1])) }

# Waits (bounded) until there are at least $n requests (with $prefix);
# returns them (fewer on timeout).
sub wait_for_requests {
    my ($self, $n, $timeout, $prefix) = @_;
    my @reqs;
    $self->wait_for(sub { @reqs = $self->requests($prefix); @reqs >= $n },
                    $timeout // 10);
    return @reqs;
}

# Waits (bounded) until every request with $prefix has been answered (or
# the client hung up), at least $n of them.
sub wait_for_replies {
    my ($self, $n, $timeout, $prefix) = @_;
    my @reqs;
    $self->wait_for(sub {
        @reqs = $self->requests($prefix);
        @reqs >= $n && !grep { !$_->{outcome} } @reqs;
    }, $timeout // 10);
    return @reqs;
}

sub wait_for {
    my ($self, $cond, $timeout) = @_;
    return CheckoutProc::wait_for($cond, $timeout);
}

# set_json(NAME, status => 200, content_type => ..., body => STRING or a
# reference (JSON-encoded)): what /json/NAME answers.
sub set_json {
    my ($self, $name, %reply) = @_;
    _check_name($name);
    my $body = $reply{body} // {};
    $body = JSON::PP->new->canonical->allow_nonref->encode($body) if ref $body;
    _write_file("$self->{dir}/state/json-$name", $JSON->encode({
        status => $reply{status} // 200,
        content_type => $reply{content_type} // 'application/json',
        body => $body,
    }));
}

sub set_switch {
    my ($self, $name, $status) = @_;
    _check_name($name);
    croak "CheckoutReceiver: bad status '$status'"
        unless $status =~ /^[1-5]\d\d$/;
    _write_file("$self->{dir}/state/switch-$name", $status);
}

# {Idempotency-Key => how often its effect was applied}: 1 each, if all is
# well, however often a delivery was repeated.
sub effects {
    my ($self) = @_;
    my %n;
    $n{ $_->{key} } += $_->{applied} ? 1 : 0
        for _read_json_lines("$self->{dir}/effects.log");
    return \%n;
}

# How many requests carried this Idempotency-Key.
sub calls {
    my ($self, $key) = @_;
    return scalar grep { ($_->{headers}{'idempotency-key'} // '') eq $key }
                  $self->requests;
}

sub _check_name {
    croak "CheckoutReceiver: bad name '$_[0]'" unless $_[0] =~ /^[\w.-]+$/;
}

sub _write_file {
    my ($path, $text) = @_;
    open my $out, '>', "$path.tmp" or croak "CheckoutReceiver: $path: $!";
    print $out $text;
    close $out or croak "CheckoutReceiver: $path: $!";
    rename "$path.tmp", $path or croak "CheckoutReceiver: $path: $!";
}

sub _read_json_lines {
    my ($path) = @_;
    open my $in, '<', $path or return ();
    flock $in, LOCK_SH;
    my @out;
    while (my $line = <$in>) {
        last unless $line =~ /\n\z/;     # a line still being written
        my $doc = eval { $JSON->decode($line) } or next;
        push @out, $doc;
    }
    return @out;
}

sub _cleanup { $_->stop for values %Live }

# ---- the server's side -----------------------------------------------------

sub _server {
    my ($self, $listen) = @_;
    $SIG{$_} = 'DEFAULT' for qw(INT HUP);
    $SIG{TERM} = 'DEFAULT';
    $SIG{CHLD} = 'IGNORE';      # connections are reaped by the kernel
    $SIG{PIPE} = 'IGNORE';
    my $n = 0;

    while (1) {
        my $conn = $listen->accept;
        if (!$conn) {
            next if $! == EINTR || $! == EAGAIN;
            sleep 0.01;
            next;
        }
        $n++;
        my $forked = eval {
            CheckoutProc::spawn(group => 0, run => sub {
                close $listen;
                $SIG{CHLD} = 'DEFAULT';
                $self->_connection($conn, $n);
            });
        };
        close $conn;
        sleep 0.05 unless $forked;
    }
}

sub _connection {
    my ($self, $sock, $conn_no) = @_;
    binmode $sock;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    my $buf = '';
    my $n = 0;
    while (1) {
        my $req = _read_request($sock, \$buf) or return;
        $req->{seq} = "$$." . ++$n;
        $req->{conn} = $conn_no;
        my $keep = $self->_handle($sock, $req);
        return unless $keep;
    }
}

# Reads more bytes into $$buf; false at EOF or on an error.
sub _more {
    my ($sock, $buf) = @_;
    while (1) {
        my $r = sysread $sock, $$buf, 65536, length $$buf;
        return $r if defined $r;
        next if $! == EINTR;
        return 0;
    }
}

sub _read_request {
    my ($sock, $buf) = @_;
    my $end;
    while (($end = index $$buf, "\r\n\r\n") < 0) {
        return undef if length $$buf > $MaxHeader;
        _more($sock, $buf) or return undef;
    }
    my $head = substr $$buf, 0, $end + 4, '';
    my ($first, @lines) = split /\r\n/, $head;
    my ($method, $target, $version) = split / /, $first // '', 3;
    return undef unless defined $version && $version =~ m{^HTTP/1\.[01]$};

    my %h;
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        $name = lc $name;
        $h{$name} = exists $h{$name} ? "$h{$name}, $value" : $value;
    }
    my $req = { time => time, method => $method, path => $target,
                version => $version, headers => \%h };

    if (($h{expect} // '') =~ /^100-continue$/i) {
        syswrite $sock, "HTTP/1.1 100 Continue\r\n\r\n";
    }

    my $body = '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            my $e;
            while (($e = index $$buf, "\r\n") < 0) {
                _more($sock, $buf) or return undef;
            }
            my $line = substr $$buf, 0, $e + 2, '';
            my ($size) = $line =~ /^([0-9a-fA-F]+)/ or return undef;
            $size = hex $size;
            if ($size == 0) {
                # trailers, up to the empty line
                while (1) {
                    while (($e = index $$buf, "\r\n") < 0) {
                        _more($sock, $buf) or return undef;
                    }
                    my $t = substr $$buf, 0, $e + 2, '';
                    last if $t eq "\r\n";
                }
                last;
            }
            return undef if length($body) + $size > $MaxBody;
            while (length $$buf < $size + 2) {
                _more($sock, $buf) or return undef;
            }
            $body .= substr $$buf, 0, $size, '';
            substr $$buf, 0, 2, '';
        }
    } elsif (defined $h{'content-length'}) {
        my $len = $h{'content-length'};
        return undef unless $len =~ /^\d+$/ && $len <= $MaxBody;
        while (length $$buf < $len) {
            _more($sock, $buf) or return undef;
        }
        $body = substr $$buf, 0, $len, '';
    }
    $req->{body} = $body;
    $req->{keep_alive} = !(($h{connection} // '') =~ /close/i
                           || ($version eq 'HTTP/1.0'
                               && ($h{connection} // '') !~ /keep-alive/i));
    return $req;
}

# Appends one JSON line to a log of the dir, under an exclusive lock.
sub _append {
    my ($self, $file, $doc) = @_;
    my $line = $JSON->encode($doc) . "\n";
    open my $out, '>>', "$self->{dir}/$file" or return;
    flock $out, LOCK_EX;
    syswrite $out, $line;
    close $out;
}

sub _on {
    my ($list, $call) = @_;
    return 1 unless defined $list;
    my @calls = ref $list eq 'ARRAY' ? @$list : split /\s*,\s*/, "$list";
    return scalar grep { $_ == $call } grep { /^\d+$/ } @calls;
}

# Counts this request for its Idempotency-Key ("" when it has none):
# returns the number of requests with that key so far, this one included.
sub _count_call {
    my ($self, $key) = @_;
    open my $lock, '>>', "$self->{dir}/state/lock" or return 1;
    flock $lock, LOCK_EX;
    my $file = "$self->{dir}/state/calls-" . unpack('H*', $key);
    my $n = 0;
    if (open my $in, '<', $file) {
        $n = <$in> // 0;
        chomp $n;
    }
    $n++;
    open my $out, '>', $file or return $n;
    print $out "$n\n";
    close $out;
    close $lock;
    return $n;
}

sub _options {
    my ($req) = @_;
    my %o;
    my ($path, $query) = split /\?/, $req->{path}, 2;
    my @seg = grep { length } split m{/}, $path // '';
    while (@seg) {
        my $s = shift @seg;
        if ($s eq 'ok' || $s eq 'rx') {
        } elsif ($s =~ /^(?:status|flaky|slow|json|switch)$/ && @seg) {
            $o{$s} = shift @seg;
        } elsif ($s eq 'hang' || $s eq 'effect') {
            $o{$s} = 1;
        } else {
            $o{unknown} = 1;
        }
    }
    for my $pair (split /&/, $query // '') {
        my ($k, $v) = split /=/, $pair, 2;
        $o{$k} = $v // 1 if defined $k && length $k;
    }
    # Only for /rx URLs: other groups' URLs get the same body.
    my $doc = ($path // '') =~ m{^/rx(?:/|$)}
        ? eval { JSON::PP->new->utf8->decode($req->{body}) } : undef;
    if (ref $doc eq 'HASH' && ref $doc->{rx} eq 'HASH') {
        $o{$_} = $doc->{rx}{$_} for keys %{ $doc->{rx} };
    }
    return \%o;
}

sub _handle {
    my ($self, $sock, $req) = @_;
    my $key = $req->{headers}{'idempotency-key'} // '';
    $req->{call} = $self->_count_call($key);
    my $keep = delete $req->{keep_alive};
    $self->_append('requests.log', $req);

    my $o = _options($req);
    my $call = $req->{call};

    if ($o->{hang} && _on($o->{hang_on}, $call)) {
        # Until the client gives up: EOF (or anything it sends: a pipelined
        # request is not expected while a reply is due).
        my $sel = IO::Select->new($sock);
        my $deadline = time + $HangMax;
        while (time < $deadline) {
            next unless $sel->can_read(1);
            my $r = sysread $sock, my $junk, 4096;
            last if !defined $r && $! != EINTR && $! != EAGAIN;
            last if defined $r && $r == 0;
        }
        $self->_append('replies.log', { seq => $req->{seq}, reply_time => time,
                                        status => 0, outcome => 'hangup' });
        return 0;
    }
    if ($o->{slow} && _on($o->{slow_on}, $call)) {
        sleep $o->{slow} / 1000;
    }

    my $status = 200;
    my $ctype = 'application/json';
    my $body = '{}';
    my @extra;

    if ($o->{switch}) {
        my $name = $o->{switch};
        if ($name =~ /^[\w.-]+$/ && open my $in, '<',
                "$self->{dir}/state/switch-$name") {
            my $s = <$in> // '200';
            chomp $s;
            $status = $s if $s =~ /^\d{3}$/;
        }
    }
    if ($o->{json} && $o->{json} =~ /^[\w.-]+$/) {
        my $r;
        if (open my $in, '<', "$self->{dir}/state/json-$o->{json}") {
            local $/;
            $r = eval { $JSON->decode(scalar <$in>) };
        }
        if ($r) {
            $status = $r->{status};
            $ctype = $r->{content_type};
            $body = $r->{body};
        } else {
            $status = 500;
            $body = '{"error":"no reply set for this name"}';
        }
    }
    if (exists $o->{reply}) {
        $body = JSON::PP->new->canonical->allow_nonref->encode($o->{reply});
    }
    $ctype = $o->{content_type} if defined $o->{content_type};
    $body = $o->{body_raw} if defined $o->{body_raw};
    if (defined $o->{status} && $o->{status} =~ /^\d{3}$/) {
        $status = $o->{status};
    }
    if ($o->{flaky} && $call <= $o->{flaky}) {
        $status = 503;
        $body = '{"error":"flaky"}';
        $ctype = 'application/json';
    }
    if ($o->{unknown}) {
        $status = 404;
        $body = '{"error":"no such path"}';
        $ctype = 'application/json';
    }
    if ($status =~ /^3/) {
        push @extra, "Location: http://127.0.0.1:$self->{port}/ok?redirected=1";
    }
    if ($o->{effect} && $status =~ /^2/) {
        my $file = "$self->{dir}/state/effect-" . unpack('H*', $key);
        my $applied = sysopen(my $fh, $file, O_WRONLY | O_CREAT | O_EXCL)
                      ? 1 : 0;
        close $fh if $applied;
        $self->_append('effects.log', { key => $key, seq => $req->{seq},
                                        applied => $applied, time => time });
    }

    utf8::encode($body) if utf8::is_utf8($body);
    my $reason = $status =~ /^2/ ? 'OK' : 'Status';
    my $out = "HTTP/1.1 $status $reason\r\n"
            . "Content-Type: $ctype\r\n"
            . "Content-Length: " . length($body) . "\r\n"
            . join('', map { "$_\r\n" } @extra)
            . ($keep ? '' : "Connection: close\r\n")
            . "\r\n$body";

    # Before the write: the client cannot act on the reply any earlier.
    my %reply = (seq => $req->{seq}, reply_time => time, status => 0 + $status,
                 outcome => 'reply');
    my $ok = 1;
    while (length $out) {
        my $w = syswrite $sock, $out;
        if (!defined $w) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $ok = 0;
            last;
        }
        substr $out, 0, $w, '';
    }
    $reply{outcome} = 'write_failed' unless $ok;
    $self->_append('replies.log', \%reply);
    return $ok && $keep;
}

1;
