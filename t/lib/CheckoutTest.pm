package CheckoutTest;

# Helpers shared by the ngx_checkout suites (t/*.t).
#
# The suites stay in Test::Nginx::Socket format, so they run under the
# project's runner (t/lib/Test/Nginx/Socket.pm) and under CPAN's Test::Nginx
# alike; a suite loads this file with
#
#     use FindBin ();
#     BEGIN { push @INC, "$FindBin::Bin/lib" }   # appended: CPAN's runner wins
#     use CheckoutTest ();
#
# What it adds, all through the runner's public hooks:
#
#   use_mock_services()   a block preprocessor: the mock cart/payment/order
#                         services as a second server in --- http_config, the
#                         step locations /_svc/ /_small/ /_trap/ /_closed after
#                         --- config, and a default JSON Content-Type (see
#                         mock_services() and step_locations() below)
#   --- checkout_json     one assertion per line on the JSON reply body
#                         (see check_json_lines())
#   --- checkout_check    names of Perl checks the suite defined with
#                         define_check(NAME => sub { ($block, $body, $doc, $i) })
#   http_request() ...    a raw HTTP/1.1 client (keepalive, many connections at
#                         once) for checks that need headers or more than one
#                         request on a connection; the time it waits for a
#                         reply is multiplied by slack()
#   at_conf_line()        "nginx.conf:LINE" assertions for --- must_die blocks
#
# Conventions in the suites:
#   - In --- response_headers_like, "Name:" with nothing after it means the
#     header is absent (its value must match ^$). CPAN's runner checks
#     --- response_headers_like only when there is no --- response_headers,
#     so the suites use one section per block.
#   - Every duration of a block is multiplied by slack() under valgrind
#     (see scale_block()).

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET ();
use IO::Select ();
use JSON::PP ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Test::More ();

use CheckoutProc ();

our @EXPORT_OK = qw(free_port define_check json_decode json_path
                    http_request http_connect http_send_recv run_clients
                    post_checkout at_conf_line id_re);

our $ID_RE = qr/^chk_[A-Za-z0-9]{22}$/;

our %Checks;
my $Installed;

my $JSON = JSON::PP->new->utf8->allow_nonref;
my $CANON = JSON::PP->new->canonical->allow_nonref;

sub id_re { $ID_RE }

sub free_port { CheckoutProc::free_port() }

sub client_port {
    for my $f (qw(main::server_port_for_client
                  Test::Nginx::Socket::server_port_for_client))
    {
        no strict 'refs';
        my $p = eval { defined &$f ? &$f() : undef };
        return $p if $p;
    }
    return $ENV{TEST_NGINX_CLIENT_PORT} || $ENV{TEST_NGINX_SERVER_PORT}
           || $ENV{TEST_NGINX_PORT} || 1984;
}

sub define_check {
    my ($name, $code) = @_;
    $Checks{$name} = $code;
    install();
}

sub install {
    return if $Installed++;
    runner_hook('add_response_body_check')->(\&_body_check);
}

# One of the runner's functions for extensions (add_block_preprocessor,
# add_response_body_check), whichever runner loaded the suite.
sub runner_hook {
    my ($name) = @_;
    return Test::Nginx::Socket->can($name) || main->can($name)
        || die "the runner has no $name()\n";
}

sub json_decode {
    my ($text) = @_;
    my $v = eval { $JSON->decode($text) };
    return $v;
}

sub canon {
    my ($v) = @_;
    return $CANON->encode($v);
}

# json_path($doc, "a.b.0.c") -> (exists, value)
sub json_path {
    my ($doc, $path) = @_;
    my $cur = $doc;
    return (1, $cur) if $path eq '.';
    for my $seg (split /\./, $path) {
        if (ref $cur eq 'HASH') {
            return (0) unless exists $cur->{$seg};
            $cur = $cur->{$seg};
        } elsif (ref $cur eq 'ARRAY') {
            return (0) unless $seg =~ /^\d+$/ && $seg < @$cur;
            $cur = $cur->[$seg];
        } else {
            return (0);
        }
    }
    return (1, $cur);
}

sub _pick {
    my ($v, $idx) = @_;
    return $v unless ref $v && ref $v eq 'ARRAY';
    return $v->[$idx];
}

sub _body_check {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return if $dry_run;
    $req_idx ||= 0;
    my $name = $block->name;

    my $spec = _pick(scalar $block->checkout_json, $req_idx);
    my $names = _pick(scalar $block->checkout_check, $req_idx);

    return unless defined $spec || defined $names;

    my $doc = defined $body ? json_decode($body) : undef;

    if (defined $spec) {
        Test::More::ok(ref $doc eq 'HASH',
            "$name - reply is a JSON object (req $req_idx)")
            or Test::More::diag("body: " . (defined $body ? $body : '<none>'));
        check_json_lines($name, $doc, $spec) if ref $doc eq 'HASH';
    }

    if (defined $names) {
        for my $check (split /[\s,]+/, $names) {
            next if $check eq '';
            my $code = $Checks{$check};
            if (!$code) {
                Test::More::fail("$name - unknown checkout_check '$check'");
                next;
            }
            $code->($block, $body, $doc, $req_idx);
        }
    }
}

# One assertion per line:
#   path: JSON          the value at path equals JSON (deep, type-exact)
#   path =~ REGEX       the value is a string matching REGEX
#   path !              path is absent
#   path ?              path is present
#   path is TYPE        string|number|integer|boolean|object|array|null
sub check_json_lines {
    my ($name, $doc, $spec) = @_;
    for my $line (split /\n/, $spec) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '' || $line =~ /^#/;
        my $desc = "$name - json $line";
        if ($line =~ /^(\S+)\s*!$/) {
            my ($exists) = json_path($doc, $1);
            Test::More::ok(!$exists, $desc);
        } elsif ($line =~ /^(\S+)\s*\?$/) {
            my ($exists) = json_path($doc, $1);
            Test::More::ok($exists, $desc);
        } elsif ($line =~ /^(\S+)\s+=~\s+(.*)$/) {
            my ($path, $re) = ($1, $2);
            my ($exists, $v) = json_path($doc, $path);
            my $ok = $exists && defined $v && !ref $v && $v =~ /$re/;
            Test::More::ok($ok, $desc)
                or Test::More::diag("got: " . ($exists ? canon($v) : '<absent>'));
        } elsif ($line =~ /^(\S+)\s+is\s+(\w+)$/) {
            my ($path, $type) = ($1, $2);
            my ($exists, $v) = json_path($doc, $path);
            my $t = $exists ? json_type($v) : '<absent>';
            Test::More::ok($t eq $type || ($type eq 'number' && $t eq 'integer'),
                           $desc)
                or Test::More::diag("got: " . ($exists ? canon($v) : '<absent>'));
        } elsif ($line =~ /^(\S+?):\s*(.*)$/) {
            my ($path, $want) = ($1, $2);
            my ($exists, $v) = json_path($doc, $path);
            my $w = eval { $JSON->decode($want) };
            if ($@) {
                Test::More::fail("$desc (bad JSON in the test: $@)");
                next;
            }
            my $got = $exists ? canon($v) : '<absent>';
            Test::More::is($got, canon($w), $desc);
        } else {
            Test::More::fail("$desc (cannot parse this checkout_json line)");
        }
    }
}

sub json_type {
    my ($v) = @_;
    return 'null' unless defined $v;
    return 'boolean' if JSON::PP::is_bool($v);
    return 'object' if ref $v eq 'HASH';
    return 'array' if ref $v eq 'ARRAY';
    my $enc = $CANON->encode($v);
    return 'string' if $enc =~ /^"/;
    return 'integer' if $enc =~ /^-?\d+$/;
    return 'number';
}

# ---------------------------------------------------------------------------
# A small blocking-with-deadline HTTP/1.1 client.

sub http_connect {
    my (%o) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $o{port} || client_port(),
                                     Proto => 'tcp',
                                     Timeout => ($o{timeout} || 3) * slack())
        or return undef;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    binmode $sock;
    return $sock;
}

sub build_request {
    my (%o) = @_;
    my $method = $o{method} || 'POST';
    my $uri = $o{uri} || '/checkout';
    my $body = defined $o{body} ? $o{body} : '';
    my @h = @{ $o{headers} || [] };
    my $has = sub { my $n = shift; scalar grep { /^\Q$n\E\s*:/i } @h };
    push @h, "Host: localhost" unless $has->('Host');
    push @h, "Content-Type: application/json"
        if !$has->('Content-Type') && !$o{no_content_type} && $method eq 'POST';
    push @h, "Content-Length: " . length($body)
        if !$has->('Content-Length') && !$has->('Transfer-Encoding')
           && ($method eq 'POST' || $method eq 'PUT' || length $body);
    push @h, "Connection: " . ($o{close} ? 'close' : 'keep-alive')
        unless $has->('Connection');
    return "$method $uri HTTP/1.1\r\n" . join('', map { "$_\r\n" } @h)
           . "\r\n" . $body;
}

# Parses one response from the front of $$buf; returns undef if incomplete.
sub parse_response {
    my ($buf, $head_only) = @_;
    my $i = index($$buf, "\r\n\r\n");
    return undef if $i < 0;
    my $head = substr($$buf, 0, $i);
    my @lines = split /\r\n/, $head;
    my $status_line = shift @lines;
    my ($status) = $status_line =~ m{^HTTP/1\.[01] (\d{3})}
        or return { error => "bad status line: $status_line" };
    my (%h, @raw);
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        push @raw, [$k, $v];
        my $lk = lc $k;
        $h{$lk} = exists $h{$lk} ? "$h{$lk}, $v" : $v;
    }
    my $pos = $i + 4;
    my $body = '';
    if ($head_only || $status == 204 || $status == 304) {
        # no body
    } elsif (($h{'transfer-encoding'} || '') =~ /chunked/i) {
        my $p = $pos;
        while (1) {
            my $e = index($$buf, "\r\n", $p);
            return undef if $e < 0;
            my ($len) = substr($$buf, $p, $e - $p) =~ /^([0-9a-fA-F]+)/;
            return { error => 'bad chunk' } unless defined $len;
            $len = hex $len;
            $p = $e + 2;
            if ($len == 0) {
                my $t = index($$buf, "\r\n\r\n", $p - 2);
                return undef if $t < 0;
                $p = $t + 4;
                last;
            }
            return undef if length($$buf) < $p + $len + 2;
            $body .= substr($$buf, $p, $len);
            $p += $len + 2;
        }
        $pos = $p;
    } elsif (defined $h{'content-length'}) {
        my $len = $h{'content-length'};
        return undef if length($$buf) < $pos + $len;
        $body = substr($$buf, $pos, $len);
        $pos += $len;
    } else {
        return undef;   # read until close: handled by the caller
    }
    substr($$buf, 0, $pos) = '';
    return { status => $status, headers => \%h, raw_headers => \@raw,
             body => $body };
}

# Sends one request on $sock (kept open) and waits up to $timeout seconds
# (times slack()) for its reply. Returns the reply hash, with {elapsed};
# {error} on failure.
sub http_send_recv {
    my ($sock, $req, $timeout, $head_only) = @_;
    $timeout = ($timeout || 3) * slack();
    my $t0 = time;
    my $deadline = $t0 + $timeout;
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        return { error => "write: $!", elapsed => time - $t0 }
            unless defined $n;
        $off += $n;
    }
    my $buf = '';
    my $sel = IO::Select->new($sock);
    while (1) {
        my $res = parse_response(\$buf, $head_only);
        if ($res) {
            $res->{elapsed} = time - $t0;
            $res->{leftover} = $buf;
            return $res;
        }
        my $left = $deadline - time;
        return { error => 'timeout', elapsed => time - $t0, partial => $buf }
            if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($sock, my $chunk, 65536);
        if (!$n) {
            # closed: a reply without length ends here
            if ($buf =~ /\r\n\r\n/) {
                my $r = parse_response(\$buf, 1);
                if ($r) {
                    $r->{body} = $buf;
                    $r->{closed} = 1;
                    $r->{elapsed} = time - $t0;
                    return $r;
                }
            }
            return { error => defined $n ? 'closed' : "read: $!",
                     elapsed => time - $t0, partial => $buf };
        }
        $buf .= $chunk;
    }
}

sub http_request {
    my (%o) = @_;
    my $sock = $o{sock} || http_connect(%o)
        or return { error => "connect: $!" };
    my $res = http_send_recv($sock, build_request(%o), $o{timeout},
                             ($o{method} || '') eq 'HEAD');
    if ($o{close}) {
        close $sock;    # as a client does: nginx logs once it is closed
    } else {
        $res->{sock} = $sock;
    }
    return $res;
}

sub post_checkout {
    my ($body, %o) = @_;
    return http_request(%o, method => 'POST', body => $body);
}

# run_clients(conns => N, requests => K, make => sub { ($conn, $seq) -> %opts },
#             timeout => SECONDS)
# Opens N connections at once; each sends K requests one after the other on
# the same keepalive connection, all connections in parallel (non-blocking,
# one IO::Select loop). Returns a list of replies (hashes as above, plus
# {conn}, {seq}, {fresh_conn}), in completion order.
sub run_clients {
    my (%o) = @_;
    my $n = $o{conns};
    my $k = $o{requests} || 1;
    my $deadline = time + ($o{timeout} || 20) * slack();
    my @c;
    for my $i (0 .. $n - 1) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => client_port(),
                                      Proto => 'tcp', Timeout => 5);
        if (!$s) {
            push @c, { i => $i, dead => "connect: $!" };
            next;
        }
        $s->blocking(0);
        setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
        binmode $s;
        push @c, { i => $i, sock => $s, seq => 0, out => '', rbuf => '' };
    }
    my @results;
    my $start = sub {
        my ($c) = @_;
        my %r = $o{make}->($c->{i}, $c->{seq});
        $r{close} = 1 if $c->{seq} == $k - 1 && !exists $r{close};
        $c->{out} = build_request(%r);
        $c->{t0} = time;
    };
    $start->($_) for grep { $_->{sock} } @c;
    my %by_fd = map { fileno($_->{sock}) => $_ } grep { $_->{sock} } @c;
    while (%by_fd) {
        my $left = $deadline - time;
        last if $left <= 0;
        my $r = IO::Select->new(map { $_->{sock} } values %by_fd);
        my $w = IO::Select->new(map { $_->{sock} } grep { length $_->{out} }
                                values %by_fd);
        my ($cr, $cw) = IO::Select->select($r, $w, undef, $left < 1 ? $left : 1);
        for my $s (@{ $cw || [] }) {
            my $c = $by_fd{fileno $s} or next;
            my $m = syswrite($s, $c->{out});
            if (defined $m) {
                substr($c->{out}, 0, $m) = '';
            } elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
                push @results, { conn => $c->{i}, seq => $c->{seq},
                                 error => "write: $!" };
                delete $by_fd{fileno $s};
                close $s;
            }
        }
        for my $s (@{ $cr || [] }) {
            my $c = $by_fd{fileno $s} or next;
            my $m = sysread($s, my $chunk, 65536);
            if (!defined $m) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            }
            if (!$m) {
                push @results, { conn => $c->{i}, seq => $c->{seq},
                                 error => 'closed before reply' };
                delete $by_fd{fileno $s};
                close $s;
                next;
            }
            $c->{rbuf} .= $chunk;
            while (my $res = parse_response(\$c->{rbuf})) {
                $res->{conn} = $c->{i};
                $res->{seq} = $c->{seq};
                $res->{elapsed} = time - $c->{t0};
                push @results, $res;
                $c->{seq}++;
                if ($c->{seq} >= $k) {
                    delete $by_fd{fileno $s};
                    close $s;
                    last;
                }
                $start->($c);
            }
        }
    }
    for my $c (values %by_fd) {
        push @results, { conn => $c->{i}, seq => $c->{seq},
                         error => 'no reply before the deadline' };
        close $c->{sock};
    }
    for my $c (grep { $_->{dead} } @c) {
        push @results, { conn => $c->{i}, seq => 0, error => $c->{dead} };
    }
    return @results;
}

# ---------------------------------------------------------------------------
# The mock services. Every suite that calls use_mock_services() gets, in each
# block:
#
#   --- http_config  prefixed with a second server on
#                    127.0.0.1:$TEST_NGINX_BACKEND_PORT (echo module) that
#                    plays cart, payments and orders (see mock_services());
#   --- config       followed by the step locations of step_locations():
#                    /_svc/PATH   proxies to the mock service PATH,
#                    /_small/PATH the same with subrequest_output_buffer_size 1k,
#                    /_trap/NAME  a step that must never run: if it does, the
#                                 error log says
#                                 open() "/nonexistent/step-was-called/NAME"
#                    /_closed     proxies to 127.0.0.1:1 (connection refused);
#   --- more_headers "Content-Type: application/json" unless the block has its
#                    own --- more_headers.

our $BIG_PAD = 'x' x 3000;

sub mock_services {
    my $s = <<'_EOC_';
    server {
        listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        default_type application/json;
        client_body_buffer_size 512k;
        client_max_body_size 1m;

        # cart service
        location = /cart/ok {
            echo '{"total":2500,"currency":"EUR"}';
        }
        location = /cart/out_of_stock {
            echo_status 409;
            echo '{"reason":"out_of_stock","message":"sku_out_of_stock is out of stock"}';
        }
        location = /cart/slow {
            echo_sleep 0.3;
            echo '{"total":2500,"currency":"EUR"}';
        }

        # payment service
        location = /pay/ok {
            echo '{"status":"authorized","authorizationId":"auth_1","amount":2500}';
        }
        location = /pay/decline {
            echo_status 402;
            echo '{"reason":"card_declined","message":"Your card was declined.","declineCode":"do_not_honor"}';
        }
        location = /pay/3ds {
            echo '{"status":"requires_action","action":{"type":"redirect_to_url","url":"https://bank.example/3ds?session=s_1","expiresInSeconds":600}}';
        }
        location = /pay/sleep10 {
            echo_sleep 10;
            echo '{"status":"authorized","authorizationId":"auth_late"}';
        }
        location = /pay/slow {
            echo_sleep 0.3;
            echo '{"status":"authorized","authorizationId":"auth_1"}';
        }
        location = /pay/partial {
            echo -n '{"status":"authorized","authorizationId":';
            echo_flush;
            echo_sleep 10;
            echo '"auth_late"}';
        }
        location = /pay/500 { echo_status 500; echo '{"error":"internal"}'; }
        location = /pay/502 { echo_status 502; echo '{"error":"bad gateway"}'; }
        location = /pay/503 { echo_status 503; echo '{"error":"unavailable"}'; }
        location = /pay/408 { echo_status 408; echo '{"reason":"request_timeout","message":"too slow"}'; }
        location = /pay/429 { echo_status 429; echo '{"reason":"rate_limited","message":"slow down"}'; }
        location = /pay/403-text {
            default_type text/plain;
            echo_status 403;
            echo 'forbidden';
        }
        location = /pay/404-json {
            echo_status 404;
            echo '{"reason":"unknown_payment_method","message":"No such payment method."}';
        }
        location = /pay/not-json {
            default_type text/html;
            echo '<html><body>Service Temporarily Unavailable</body></html>';
        }
        location = /pay/array     { echo '[{"status":"authorized"}]'; }
        location = /pay/string    { echo '"authorized"'; }
        location = /pay/number    { echo '2500'; }
        location = /pay/empty     { return 200 ''; }
        location = /pay/truncated { echo -n '{"status":"authorized","authorizationId":"auth_1"'; }
        location = /pay/trailing  { echo '{"status":"authorized"} {"again":true}'; }
        location = /pay/big       { echo '{"status":"authorized","pad":"@BIG_PAD@"}'; }

        # order service
        location = /orders/ok {
            echo_status 201;
            echo '{"orderId":"ord_123","total":2500,"currency":"EUR"}';
        }
        location = /orders/slow {
            echo_sleep 0.3;
            echo '{"orderId":"ord_123"}';
        }

        # any service: answers with what it was sent
        location = /echo {
            echo_read_request_body;
            echo -n '{"orderId":"ord_echo","stepGot":';
            echo_request_body;
            echo -n ',"headers":{"method":"$request_method","uri":"$request_uri","contentType":"$http_content_type","contentLength":"$http_content_length","transferEncoding":"$http_transfer_encoding","idempotencyKey":"$http_idempotency_key","traceId":"$http_x_trace_id","authorization":"$http_authorization","acceptEncoding":"$http_accept_encoding","ifMatch":"$http_if_match","ifNoneMatch":"$http_if_none_match","ifModifiedSince":"$http_if_modified_since","range":"$http_range","ifRange":"$http_if_range","expect":"$http_expect"}}';
        }
    }
_EOC_
    $s =~ s/\@BIG_PAD\@/$BIG_PAD/g;
    return $s;
}

sub step_locations {
    return <<'_EOC_';

        location /_svc/ {
            internal;
            proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/;
            proxy_read_timeout 60s;
            subrequest_output_buffer_size 256k;
        }
        location /_small/ {
            internal;
            proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/;
            subrequest_output_buffer_size 1k;
        }
        location /_trap/ {
            internal;
            alias /nonexistent/step-was-called/;
        }
        location = /_closed {
            internal;
            proxy_pass http://127.0.0.1:1/;
        }
_EOC_
}

# body_of_size($n): a JSON object of exactly $n bytes
sub body_of_size {
    my ($n) = @_;
    my $head = '{"customerId":"cus_1","pad":"';
    my $tail = '"}';
    return $head . ('p' x ($n - length($head) - length($tail))) . $tail;
}

# chunked($body, $size): $body in the chunked transfer coding
sub chunked {
    my ($body, $size) = @_;
    $size ||= 100;
    my $out = '';
    for (my $i = 0; $i < length $body; $i += $size) {
        my $c = substr($body, $i, $size);
        $out .= sprintf("%x\r\n%s\r\n", length $c, $c);
    }
    return $out . "0\r\n\r\n";
}

# ---------------------------------------------------------------------------
# Time. Under valgrind nginx runs many times slower; a run there is to check
# memory, not the machine's speed. So every duration of a block, what it
# sets and what it checks, is multiplied by slack(): 1, or 5 under valgrind
# ($TEST_NGINX_TIME_SCALE, valgrind or not, sets another factor). Blocks
# keep their shape at that scale: a step cut off at 200 ms is cut off at
# 1 s and checked to be, a 300 ms service takes 1.5 s, a 500 ms budget is
# 2.5 s. scale_block() does it for each block; the suites' own checks in
# Perl multiply their bounds by slack().

sub slack {
    return $ENV{TEST_NGINX_TIME_SCALE} if $ENV{TEST_NGINX_TIME_SCALE};
    return $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;
}

# The module's defaults (README), which a block that does not set them
# gets scaled.
our %DefaultMs = (checkout_timeout => 2000, checkout_redis_timeout => 100);

# Run last, after every other preprocessor (the last added runs first, and
# this one is added when this file loads, before any suite adds its own):
# it sees the block as they have left it, their servers and steps included.
sub scale_block {
    my ($block) = @_;
    my $f = slack();
    return if $f == 1 || defined $block->must_die;

    for my $sec (qw(main_config http_config config)) {
        my $text = $block->$sec;
        $block->set_value($sec => scale_config($text, $f)) if defined $text;
    }
    my $hc = $block->http_config // '';
    for my $d (sort keys %DefaultMs) {
        $hc .= "\n    $d " . $DefaultMs{$d} * $f . "ms;\n"
            unless $hc =~ /\b$d\b/;
    }
    $block->set_value(http_config => $hc);

    for my $sec (qw(timeout wait)) {
        my $t = $block->$sec;
        $t = runner_hook('timeout')->() if $sec eq 'timeout' && !defined $t;
        next unless defined $t && $t =~ /^\s*([\d.]+)\s*(ms|s)?\s*$/;
        $block->set_value($sec => ($2 && $2 eq 'ms' ? $1 / 1000 : $1) * $f);
    }

    # --- request eval: [[packet, {value => ..., delay_before => s}], ...]
    my $req = $block->request;
    my @packets = ref $req eq 'ARRAY'
                  ? map { ref $_ eq 'ARRAY' ? @$_ : () } @$req : ();
    for my $p (grep { ref $_ eq 'HASH' && $_->{delay_before} } @packets) {
        $p->{delay_before} *= $f;
    }

    my $h = $block->response_headers_like;
    $block->set_value(response_headers_like => scale_pattern($h, $f))
        if defined $h && !ref $h;

    # the module's lines that name a deadline: "timed out after 200 ms"
    for my $sec (qw(error_log no_error_log)) {
        my $l = $block->$sec;
        next unless defined $l && !ref $l;
        $l =~ s/\bafter (\d+) ms\b/'after ' . $1 * $f . ' ms'/ge;
        $block->set_value($sec => $l);
    }
}

# nginx.conf text: the value of every directive named *_timeout, of every
# timeout= parameter (checkout_step, checkout_redis), and every echo_sleep
# (the mock services' delays keep their proportion to the deadlines).
sub scale_config {
    my ($text, $f) = @_;
    my %ms = (ms => 1, s => 1000, m => 60_000, h => 3_600_000);
    $text =~ s{(\b\w+_timeout\s+|\btimeout=)(\d+)(ms|s|m|h)?(?=[\s;])}
              {$2 == 0 ? "$1$2" . ($3 // '')
                       : $1 . $2 * $ms{$3 // 's'} * $f . 'ms'}ge;
    $text =~ s{(\becho_sleep\s+)(\d+(?:\.\d+)?)(?=\s*;)}{$1 . $2 * $f}ge;
    return $text;
}

# A header pattern: "dur=(19\d|[234]\d\d)" (Server-Timing, milliseconds)
# matches from 190 to 499 ms; it becomes a pattern from 190 * f to 499 * f.
# The same for ":0\.(19\d|[234]\d\d)" ($checkout_step_timings, seconds).
sub scale_pattern {
    my ($h, $f) = @_;
    my $group = qr/\(((?:[^()]|\([^()]*\))*)\)/;
    $h =~ s{dur=$group}{
        my ($lo, $hi) = _matched_range($1, 0);
        'dur=' . _range_re($lo * $f, $hi * $f, 0)
    }ge;
    $h =~ s{:0\\\.$group}{
        my ($lo, $hi) = _matched_range($1, 1);
        ':' . _range_re($lo * $f, $hi * $f, 1)
    }ge;
    return $h;
}

# The smallest and largest whole number (with $ms: of three digits, a
# fraction of a second) that the pattern matches; dies unless it matches
# them all in between.
sub _matched_range {
    my ($re, $ms) = @_;
    my @n = grep { ($ms ? sprintf('%03d', $_) : $_) =~ /^(?:$re)$/ }
            0 .. ($ms ? 999 : 99_999);
    die "CheckoutTest: '$re' matches no range of durations\n"
        unless @n && $n[-1] - $n[0] == $#n;
    return ($n[0], $n[-1]);
}

# A pattern for the whole numbers from $lo to $hi; with $s, for them as
# seconds with three decimals ("1.500" for 1500).
sub _range_re {
    my ($lo, $hi, $s) = @_;
    ($lo, $hi) = (int $lo, int $hi);
    my @alt;
    if ($s) {
        for my $sec (int($lo / 1000) .. int($hi / 1000)) {
            my $a = $lo > $sec * 1000 ? $lo - $sec * 1000 : 0;
            my $b = $hi < $sec * 1000 + 999 ? $hi - $sec * 1000 : 999;
            push @alt, "$sec\\." . _digits(sprintf('%03d', $a),
                                            sprintf('%03d', $b));
        }
    } else {
        for my $len (length $lo .. length $hi) {
            push @alt, _digits($len == length $lo ? $lo : 10 ** ($len - 1),
                               $len == length $hi ? $hi : 10 ** $len - 1);
        }
    }
    return '(' . join('|', @alt) . ')';
}

# A pattern for the digit strings from $a to $b, both of the same length.
sub _digits {
    my ($a, $b) = @_;
    return $a if $a eq $b;
    my ($x, $y) = (substr($a, 0, 1), substr($b, 0, 1));
    my ($ra, $rb) = (substr($a, 1), substr($b, 1));
    return _class($x, $y) if $ra eq '';
    return $x . _digits($ra, $rb) if $x eq $y;
    my $n = length $ra;
    my $any = $n > 1 ? "\\d{$n}" : '\\d';
    return _class($x, $y) . $any if $ra !~ /[^0]/ && $rb !~ /[^9]/;
    my @alt = ($x . _digits($ra, '9' x $n));
    push @alt, _class($x + 1, $y - 1) . $any if $y - $x > 1;
    push @alt, $y . _digits('0' x $n, $rb);
    return '(?:' . join('|', @alt) . ')';
}

sub _class {
    my ($x, $y) = @_;
    return $x == $y ? $x : $x == 0 && $y == 9 ? '\\d' : "[$x-$y]";
}

runner_hook('add_block_preprocessor')->(\&scale_block)
    if Test::Nginx::Socket->can('add_block_preprocessor');

sub use_mock_services {
    my (%o) = @_;
    $ENV{TEST_NGINX_BACKEND_PORT} ||= free_port();
    runner_hook('add_block_preprocessor')->(sub {
        my ($block) = @_;
        my $hc = $block->http_config;
        $block->set_value(http_config =>
                          mock_services() . (defined $hc ? $hc : ''));
        my $c = $block->config;
        $c = $o{default_config} if !defined $c && !defined $block->must_die;
        $block->set_value(config => $c . step_locations()) if defined $c;
        if (!defined $block->more_headers && !defined $block->raw_request) {
            $block->set_value(more_headers => "Content-Type: application/json");
        }
    });
    install();
}

# ---------------------------------------------------------------------------
# For --- must_die blocks:
#
#   --- error_log eval
#   CheckoutTest::at_conf_line(qr/duplicate/i, 'checkout_step validate /_b')
#
# matches an [emerg] line that matches the pattern and ends in
# "in .../nginx.conf:LINE", where LINE of that very file holds the given text:
# the message names the right line, whatever the runner's config template.

sub at_conf_line {
    my ($pat, $text) = @_;
    return qr/\[emerg\].*?$pat.*\bin\s+(?<conf>\S*nginx\.conf):(?<line>\d+)
              \s*$(?(?{ CheckoutTest::_conf_line_has($+{conf}, $+{line}, $text) })
              |(*FAIL))/x
        if defined $text;
    return qr/\[emerg\].*?$pat.*\bin\s+\S*nginx\.conf:\d+\s*$/;
}

sub _conf_line_has {
    my ($file, $line_no, $text) = @_;
    return 0 unless defined $file && -f $file;
    open my $in, '<', $file or return 0;
    my @lines = <$in>;
    close $in;
    my $l = $lines[$line_no - 1];
    return 0 unless defined $l;
    (my $norm = $l) =~ s/\s+/ /g;
    (my $want = $text) =~ s/\s+/ /g;
    return index($norm, $want) >= 0 ? 1 : 0;
}

1;
