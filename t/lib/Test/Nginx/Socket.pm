package Test::Nginx::Socket;

# The project's own Test::Nginx::Socket: CPAN's module is not packaged in
# Debian 12, so this one runs the same .t files with the same sections and the
# same meaning (and the same number of subtests per block, so `plan tests =>`
# counts agree).  Test::Nginx::Util runs nginx; this file sends the requests
# and checks the results.  The POD at the end lists what is supported.

use strict;
use warnings;

# -base, not -Base: Spiffy's -Base source filter would turn every
# "sub name {" of this file into a method.
use Test::Base -base;

use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Select ();
use IO::Socket::INET ();
use List::Util qw(min shuffle);
use Scalar::Util qw(looks_like_number);
use Test::LongString;    # is_string
use Time::HiRes qw(sleep);

use Test::Nginx::Util;

our @EXPORT = qw(
    run_tests repeat_each workers worker_connections master_on master_off
    master_process_enabled log_level no_shuffle no_root_location
    check_accum_error_log no_long_string env_to_nginx timeout server_name
    server_port server_port_for_client server_root html_dir
    add_block_preprocessor add_response_body_check add_cleanup_handler
    bail_out is_str
);

# CPAN sections this runner does not implement.  A block using one is a
# bail-out rather than a silently meaningless test.
my @Unsupported = qw(
    tcp_listen udp_listen http2 http3 todo todo_nginx skip_nginx2
    skip_openssl skip_slave response_body_filters shutdown_error_log
    no_shutdown_error_log server_addr_for_client error_log_file http09
    charset reload_fails request_eval response_body_eval
);

our @ResponseBodyChecks;

# Called after every response while nginx is still running, as
# ($block, $body, $req_idx, $repeated_req_idx, $dry_run).
sub add_response_body_check { push @ResponseBodyChecks, shift }

# The block whose --- config a block without one runs against.
my $PrevConfigBlock;

sub run_tests {
    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;

    for my $i (0 .. $#blocks) {
        my $block = $blocks[$i];
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_block($block, $i == $#blocks);
    }

    cleanup();
}

# A section's value, undef when absent.  Test::Base's accessors return an
# empty list for sections the file never mentions, which would shift
# arguments in list context.
sub section {
    my ($block, $name) = @_;
    return scalar $block->$name;
}

sub run_block {
    my ($block, $is_last) = @_;
    my $name = $block->name;

    for my $sec (@Unsupported) {
        bail_out("$name - --- $sec is not supported by the project's "
                 . "Test::Nginx runner (t/lib)") if exists $block->{$sec};
    }

    # As in CPAN, a block without --- config runs against the server of the
    # previous block (here: a fresh nginx with that block's configuration).
    my $server_block = $block;
    if (defined section($block, 'config')) {
        $PrevConfigBlock = $block;
    } else {
        $server_block = $PrevConfigBlock
            // bail_out("$name - No '--- config' section specified and "
                        . "could not get previous one.");
    }

    if (my ($count, $reason) = skip_spec($block)) {
        for (1 .. $RepeatEach) {
            SKIP: { skip("$name - $reason", $count) }
        }
        return;
    }

    return run_must_die($block, $server_block)
        if defined section($block, 'must_die');

    my $valgrind = $UseValgrind;
    my $rand_ports = {};
    prepare_server_root($block, $server_block, $rand_ports,
                        $valgrind ? 'off' : master_process_enabled());

    my $start = start_nginx($valgrind);
    if (!$start->{listening}) {
        stop_nginx();
        fail("$name - nginx failed to start: "
             . ($start->{error} // describe_status($start->{status})));
        diag(log_tail());
        return;
    }

    if (defined(my $init = section($block, 'init'))) {
        eval $init;
        bail_out("$name - init failed: $@") if $@;
    }

    $Test::Nginx::Util::ErrLogFilePos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        # CPAN rewrites them before each repetition too.
        write_user_files($block, $rand_ports) if $rep > 0;
        run_requests($block, $rep);
    }

    # TEST_NGINX_NO_CLEAN leaves the last server running for inspection.
    my $exit = $is_last && $NoClean ? undef : stop_nginx();
    check_server_health($block, $exit);
}

sub prepare_server_root {
    my ($block, $server_block, $rand_ports, $master) = @_;
    setup_server_root();
    write_user_files($server_block, $rand_ports) if $server_block != $block;
    write_user_files($block, $rand_ports);
    write_config_file($server_block, $rand_ports, $master);
}

# (count, reason) when --- skip_eval or --- skip_nginx says to skip.
sub skip_spec {
    my ($block) = @_;
    my $name = $block->name;

    if (defined(my $spec = section($block, 'skip_eval'))) {
        my ($count, $code) = $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- skip_eval spec: $spec");
        my $skip = eval $code;
        bail_out("$name - skip_eval - failed to eval the Perl code "
                 . "\"$code\": $@") if $@;
        return ($count, 'skip_eval') if $skip;
    }

    if (defined(my $spec = section($block, 'skip_nginx'))) {
        my ($count, $op, @v) = $spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*
                                          (\d+)\.(\d+)\.(\d+)
                                          (?:\s*:\s*(.*))?\s*$}x
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        my $reason = pop(@v) || "nginx version $op $v[0].$v[1].$v[2]";
        my $want = sprintf "%d.%03d%03d", @v;
        my $have = nginx_version();
        my %cmp = ('<'  => $have < $want,  '<=' => $have <= $want,
                   '>'  => $have > $want,  '>=' => $have >= $want);
        return ($count, $reason) if $cmp{$op};
    }

    return;
}

# --- must_die: nginx must refuse to start; what it says on the way out is
# in the error log view (Util sends nginx's stderr to error.log).
sub run_must_die {
    my ($block, $server_block) = @_;
    my $name = $block->name;
    my $expected = section($block, 'must_die');

    prepare_server_root($block, $server_block, {}, master_process_enabled());
    $Test::Nginx::Util::ErrLogFilePos = 0;

    for my $rep (0 .. $RepeatEach - 1) {
        my $start = start_nginx(0);
        my $status = 0;
        if ($start->{exited}) {
            $status = $start->{status};
        } else {
            diag("$name - $start->{error}") if $start->{error};
            warn "WARNING: $name - nginx must die but it does not; "
                 . "killing it (req $rep)\n";
            stop_nginx();
        }

        if ($status & 127) {
            fail("$name - nginx " . describe_status($status));
        } elsif (looks_like_number($expected)) {
            Test::More::is($expected, $status >> 8,
                           "$name - die with the expected exit code");
        } else {
            isnt($status, 0, "$name - die as expected");
        }

        check_error_log($block, $rep);
    }
}

sub describe_status {
    my ($status) = @_;
    return "exited on signal " . ($status & 127) if $status & 127;
    return "exited with status " . ($status >> 8);
}

sub log_tail {
    my $lines = whole_error_log();
    my $from = @$lines > 20 ? @$lines - 20 : 0;
    return join '', @$lines[$from .. $#$lines];
}

# What CPAN only warns about fails here: [alert], [crit], [emerg] lines, a
# process that exited on a signal, a failed assertion, nginx dying before the
# end of the block, and valgrind's findings.  A level the block's error_log or
# no_error_log patterns mention is the block's own business.  These checks
# add subtests only when they fail, so passing blocks keep CPAN's counts.
sub check_server_health {
    my ($block, $exit) = @_;
    my $name = $block->name;

    if ($exit) {
        if ($exit->{early}) {
            fail("$name - nginx " . describe_status($exit->{status})
                 . " before the end of the block");
            diag(log_tail());
        } elsif ($exit->{forced}) {
            diag("$name - nginx did not exit after SIGQUIT (a request still "
                 . "running?); killed it");
        } elsif ($exit->{status} != 0) {
            fail("$name - nginx " . describe_status($exit->{status})
                 . " on SIGQUIT");
        }

        for my $record (valgrind_errors()) {
            my ($first) = $record =~ /^\s*(.*)/;
            fail("$name - valgrind: $first");
            diag($record);
        }
    }

    my @words = grep { !mentioned($block, $_) }
                '[alert]', '[crit]', '[emerg]', 'exited on signal';
    my @bad = grep {
                  my $line = $_;
                  (grep { index($line, $_) >= 0 } @words)
                  || $line =~ /\bAssertion .*?failed\b/;
              } @{ whole_error_log() };
    if (@bad) {
        fail("$name - error.log has " . @bad . " line(s) with "
             . join('/', @words) . " or a failed assertion");
        diag(join '', @bad[0 .. min(19, $#bad)]);
    }
}

# Whether the block's error_log/no_error_log patterns mention $word
# ("[alert" for "[alert]", as CPAN does).
sub mentioned {
    my ($block, $word) = @_;
    (my $stem = $word) =~ s/\]$//;
    return grep { value_contains($_, $stem) }
           grep { defined }
           section($block, 'error_log'), section($block, 'no_error_log');
}

sub value_contains {
    my ($val, $str) = @_;
    return grep { value_contains($_, $str) } @$val if ref $val eq 'ARRAY';
    return index("$val", $str) >= 0;
}

# ---- requests ----------------------------------------------------------------

sub run_requests {
    my ($block, $rep) = @_;
    my $name = $block->name;

    my ($requests, $pipelined) = build_requests($block);
    my $timeout = parse_time(section($block, 'timeout')) // timeout();
    my $ignore = defined section($block, 'ignore_response');
    my $wait = parse_time(section($block, 'wait'));

    # Expectations are arrays, one element per response, when there is more
    # than one response.
    my $total = $pipelined || @$requests;
    my $need_array = $pipelined || @$requests > 1;

    my $idx = 0;
    for my $request (@$requests) {
        my ($raw, $is_head) = send_request($block, $request, $timeout);

        for (1 .. ($pipelined || 1)) {
            if (!$ignore) {
                my ($res, $raw_headers, $left) =
                    parse_response($name, $raw, $is_head);
                if ($pipelined) {
                    $raw = $left // '';
                } elsif (defined $left && length $left) {
                    warn "WARNING: $name - unexpected extra bytes after "
                         . "the response: \"" . fmt_str($left) . "\"\n";
                }
                check_response($block, $res, $raw_headers // '', $idx, $rep,
                               $need_array);
            }

            if ($idx < $total - 1) {
                sleep $wait if $wait;
                check_error_log($block, $rep);
                check_access_log($block, $rep) unless $ignore;
            }
            $idx++;
        }
    }

    sleep $wait if $wait;

    # Without systemtap CPAN skips one subtest for --- stap.
    if ($block->{stap}) {
        SKIP: {
            skip("$name - stap_out - tests skipped due to env "
                 . "TEST_NGINX_USE_STAP is not set", 1);
        }
    }

    check_error_log($block, $rep);
    check_access_log($block, $rep) unless $ignore;
}

# The block's requests, each a list of packets {value, delay_before}, and the
# number of pipelined requests (0 unless --- pipelined_requests).
sub build_requests {
    my ($block) = @_;
    my $name = $block->name;

    if (defined(my $raw = section($block, 'raw_request'))) {
        my @packets = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        return ([[map { { value => $_ } } @packets]], 0);
    }

    my $more = section($block, 'more_headers') // '';

    if (defined(my $reqs = section($block, 'pipelined_requests'))) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            if ref $reqs ne 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            my $packets = build_request($name, [{ value => $reqs->[$i] }],
                                        headers_for($name, $more, $i), $conn);
            $all .= join '', map { $_->{value} } @$packets;
        }
        return ([[{ value => $all }]], scalar @$reqs);
    }

    my $request = section($block, 'request');
    if (!ref $request) {
        # Comment lines may precede the request line.
        1 while defined $request && $request =~ s/^\s*#[^\n]+\s+|^\s+//gs;
        $request = [$request];
    } elsif (ref $request ne 'ARRAY') {
        bail_out("$name - invalid --- request: MUST be string or array of "
                 . "requests");
    }

    my @built;
    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my @packets;
        if (ref $one eq 'ARRAY') {
            for my $p (@$one) {
                push @packets, ref $p eq 'HASH' ? {%$p}
                             : !ref $p ? { value => $p }
                             : bail_out("$name - Invalid syntax. $p should be "
                                        . "a string or hash with value.");
            }
        } elsif (!ref $one) {
            @packets = ({ value => $one });
        } else {
            bail_out("$name - Invalid syntax. $one should be a string or an "
                     . "array of packets.");
        }
        push @built, build_request($name, \@packets,
                                   headers_for($name, $more, $i), 'close');
    }
    return (\@built, 0);
}

# --- more_headers for the $i-th request: one string for all, or an array.
sub headers_for {
    my ($name, $more, $i) = @_;
    return $more if ref $more ne 'ARRAY';
    return $more->[$i]
        // bail_out("$name - --- more_headers lacks data for the ${i}th request");
}

# Turns "METHOD [URI [VERSION]]\nbody" (split into packets) into the packets
# of an HTTP request: the request line completed (/ and HTTP/1.1 by default),
# Host and Connection unless --- more_headers has them, the extra headers,
# and Content-Length for a non-chunked body (then trimmed, as CPAN does).
# Packet boundaries stay where they were relative to the request text.
sub build_request {
    my ($name, $packets, $more, $conn) = @_;

    my $orig = join '', map { $_->{value} // '' } @$packets;
    my ($first, $content) = $orig =~ /\A([^\n]*\n?)(.*)\z/s;
    bail_out("$name - Request line should be non-empty") if $first eq '';
    my ($lead, $meth, $url, $ver) =
        $first =~ /^(\s*)(\S+) *(?:(\S+) *)?(?:(\S+) *)?\s*$/
        or bail_out("$name - Request line is not valid. Should be "
                    . "'meth [url [version]]' but got \"$first\".");
    my $line = "$meth " . ($url // '/') . ' ' . ($ver // 'HTTP/1.1') . "\r\n";

    my ($hdrs, $chunked) = parse_more_headers($more);

    my ($content_start, $trimmed_lead) = (length $first, 0);
    my $len_header = '';
    if (!$chunked && $content ne '' && $hdrs !~ /(?:^|\n)Content-Length:/i) {
        ($trimmed_lead) = map { length } $content =~ /^(\s*)/;
        $content =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($content) . "\r\n";
    }

    my $headers = '';
    $headers .= "Host: $ServerName\r\n" unless $hdrs =~ /(?:^|\n)Host:/i;
    $headers .= "Connection: $conn\r\n" unless $hdrs =~ /(?:^|\n)Connection/i;
    $headers .= "$hdrs$len_header\r\n";

    my $new = $line . $headers . $content;
    my $head_len = length($line) + length($headers);

    # Where each packet boundary of the original text lands in the new one.
    my ($offset, $prev, @out) = (0, 0);
    for my $i (0 .. $#$packets) {
        $offset += length($packets->[$i]{value} // '');
        my $cut;
        if ($i == $#$packets) {
            $cut = length $new;
        } elsif ($offset < $content_start) {
            $cut = clamp($offset - length $lead, 0, length($line) - 2);
        } else {
            $cut = $head_len + clamp($offset - $content_start - $trimmed_lead,
                                     0, length $content);
        }
        $cut = $prev if $cut < $prev;
        push @out, { %{ $packets->[$i] },
                     value => substr($new, $prev, $cut - $prev) };
        $prev = $cut;
    }
    return \@out;
}

sub clamp {
    my ($v, $lo, $hi) = @_;
    return $v < $lo ? $lo : $v > $hi ? $hi : $v;
}

# "Name: value" lines ("#" lines are comments) as CRLF-terminated headers, and
# whether they ask for a chunked body.
sub parse_more_headers {
    my ($in) = @_;
    my ($out, $chunked) = ('', 0);
    for my $header (split /\n+/, $in) {
        next if $header =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $header, 2;
        $val //= '';
        $chunked = 1 if lc $key eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $chunked);
}

# Sends the packets on a new connection and reads until the server closes it.
# --- timeout bounds the wait between two I/O events, as in CPAN.
sub send_request {
    my ($block, $packets, $timeout) = @_;
    my $name = $block->name;

    my @queue = @$packets;
    my $is_head = (join '', map { $_->{value} } @queue) =~ /^\s*HEAD\s+/;

    my $sock = IO::Socket::INET->new(
        PeerAddr => $ServerAddr,
        PeerPort => $ServerPortForClient,
        Proto    => 'tcp',
        Timeout  => $timeout,
    );
    if (!$sock) {
        fail("$name - Can't connect to $ServerAddr:$ServerPortForClient: $@");
        return ('', $is_head);
    }
    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';

    my $middle_delay = section($block, 'raw_request_middle_delay');
    my $shutdown = section($block, 'shutdown');
    my $sel = IO::Select->new($sock);
    my ($wbuf, $woff, $resp) = ((shift @queue)->{value}, 0, '');

    while (1) {
        $! = 0;
        my ($readable, $writable) =
            IO::Select->select($sel, defined $wbuf ? $sel : undef, undef,
                               $timeout);
        if (!$readable) {
            next if $! == EINTR;
            fail("ERROR: client socket timed out - $name\n")
                unless defined section($block, 'abort');
            last;
        }

        if (@$writable) {
            my $n = syswrite($sock, $wbuf, length($wbuf) - $woff, $woff);
            if (!defined $n) {
                if ($! != EAGAIN && $! != EWOULDBLOCK) {
                    # The server may have answered early (a 413, say) and
                    # closed: stop writing, read what it said.
                    warn "WARNING: $name - write failed: $!\n";
                    undef $wbuf;
                }
            } elsif (($woff += $n) >= length $wbuf) {
                if (my $next = shift @queue) {
                    my $delay = parse_time($next->{delay_before}
                                           // $middle_delay);
                    sleep $delay if $delay;
                    ($wbuf, $woff) = ($next->{value}, 0);
                } else {
                    undef $wbuf;
                    if (defined $shutdown) {
                        shutdown($sock, $shutdown =~ /^\s*$/ ? 1 : $shutdown);
                    }
                }
            }
        }

        if (@$readable) {
            my $n = sysread($sock, my $buf, 65536);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK;
                warn "WARNING: $name - HTTP response read failure: $!\n";
                last;
            }
            last if $n == 0;
            $resp .= $buf;
        }
    }

    close $sock;
    return ($resp, $is_head);
}

# ---- responses ---------------------------------------------------------------

# Parses one response off the front of $raw: ({code, headers => [[name,
# value], ...], content}, the raw status line and headers, the bytes after the
# response).  The response is undef when its chunked body is malformed.
sub parse_response {
    my ($name, $raw, $is_head) = @_;

    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';

    my ($head, $body) = ($raw, '');
    if ($raw =~ /\r?\n\r?\n/) {
        ($head, $body) = (substr($raw, 0, $-[0]), substr($raw, $+[0]));
    }

    my @lines = split /\r?\n/, $head;
    my $status = shift(@lines) // '';
    my %res = (code => undef, headers => [], content => '');
    $res{code} = $1 if $status =~ m{^HTTP/[\d.]+\s+(\d+)};
    for (@lines) {
        if (/^([^\s:]+)\s*:\s*(.*?)\s*$/) {
            push @{ $res{headers} }, [$1, $2];
        } elsif (/^\s+(.*?)\s*$/ && @{ $res{headers} }) {
            $res{headers}[-1][1] .= " $1";
        }
    }

    my $left;
    my $code = $res{code} // 0;
    my $te = header_value(\%res, 'Transfer-Encoding') // '';
    my $len = header_value(\%res, 'Content-Length');

    if ($is_head || $code == 304 || $code == 204 || $code == 101) {
        ($body, $left) = ('', $body);
    } elsif ($te eq 'chunked') {
        ($body, $left) = decode_chunked($name, $body);
        return (undef, $raw_headers) unless defined $body;
    } elsif (defined $len && $len =~ /^\d+$/) {
        if (length $body > $len) {
            $left = substr($body, $len);
            $body = substr($body, 0, $len);
        } elsif (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($body) . "\n";
        }
    }

    $res{content} = $body;
    return (\%res, $raw_headers, $left);
}

# (decoded body, bytes after the last chunk), or () after failing a subtest
# for malformed data.
sub decode_chunked {
    my ($name, $raw) = @_;
    my $decoded = '';
    pos($raw) = 0;
    while (1) {
        return ($decoded, substr($raw, pos $raw))
            if $raw =~ /\G0[ \t]*\r\n\r\n/gc;

        if ($raw =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
            my $size = hex $1;
            if (length($raw) - pos($raw) < $size) {
                fail("$name - invalid chunked data received (not enough "
                     . "octets for the data section)");
                return;
            }
            $decoded .= substr($raw, pos $raw, $size);
            pos($raw) += $size;
            if ($raw !~ /\G\r\n/gc) {
                fail("$name - invalid chunked data received (expected CRLF).");
                return;
            }
        } elsif ($raw =~ /\G(.+)/gcs) {
            fail("$name - invalid chunked body received: " . fmt_str($1));
            return;
        } else {
            fail("$name - no last chunk found - " . fmt_str($raw));
            return;
        }
    }
}

# A header's value (repeated headers joined with ", "), undef when absent.
sub header_value {
    my ($res, $name) = @_;
    return undef unless $res;
    my @vals = map { $_->[1] } grep { lc $_->[0] eq lc $name }
               @{ $res->{headers} };
    return @vals ? join(', ', @vals) : undef;
}

# The element for this response when the block has several.
sub indexed_value {
    my ($name, $value, $idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$idx] if ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    return ref $value eq 'ARRAY' ? $value->[0] : $value;
}

# CPAN lets expectations say $ServerPort / $ServerPortForClient.
sub expand_ports {
    my ($s) = @_;
    return $s if !defined $s || ref $s;
    $s =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
    $s =~ s/\$ServerPort\b/$ServerPort/g;
    return $s;
}

sub check_response {
    my ($block, $res, $raw_headers, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $code = $res && defined $res->{code} ? $res->{code} : '';

    if (defined(my $like = section($block, 'error_code_like'))) {
        my $pat = indexed_value($name, $like, $idx, $need_array);
        like($code, qr/$pat/sm, "$name - status code ok");
    } elsif (defined(my $expected = section($block, 'error_code'))) {
        Test::More::is($code, indexed_value($name, $expected, $idx, $need_array),
                       "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }

    for my $kind (qw(like unlike)) {
        my $spec = section($block, "raw_response_headers_$kind") // next;
        my $pat = indexed_value($name, $spec, $idx, $need_array);
        ($kind eq 'like' ? \&like : \&unlike)
            ->($raw_headers, qr/$pat/s, "$name - raw resp headers $kind");
    }

    my ($hspec, $hkind) = (section($block, 'response_headers'), 'ok');
    ($hspec, $hkind) = (section($block, 'response_headers_like'), 'like ok')
        unless defined $hspec;
    if (defined $hspec) {
        for my $h (parse_headers(indexed_value($name, $hspec, $idx,
                                               $need_array))) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                       "$name - header $key not present in the raw headers");
            } elsif ($hkind eq 'ok') {
                Test::More::is(header_value($res, $key) // '',
                               expand_ports($val), "$name - header $key ok");
            } else {
                like(header_value($res, $key) // '', qr/^$val$/,
                     "$name - header $key like ok");
            }
        }
    }

    my $content = $res ? $res->{content} : undef;
    if (defined(my $spec = section($block, 'response_body'))) {
        my $expected = expand_ports(indexed_value($name, $spec, $idx,
                                                  $need_array));
        my $desc = "$name - response_body - response is expected "
                   . "(repeated req $rep, req $idx)";
        if (ref $expected) {
            like($content, $expected, "$name - response_body - like "
                                      . "(repeated req $rep, req $idx)");
        } elsif ($NoLongString) {
            Test::Base::is($content, $expected, $desc);
        } else {
            is_string($content, $expected, $desc);
        }
    } else {
        # As in CPAN, response_body_like wins when both are given.
        my $type = defined section($block, 'response_body_like') ? 'like'
                                                                  : 'unlike';
        if (defined(my $spec = section($block, "response_body_$type"))) {
            my $pat = expand_ports(indexed_value($name, $spec, $idx,
                                                 $need_array));
            my $summary = summary($content);
            ($type eq 'like' ? \&like : \&unlike)
                ->($content, qr/$pat/s,
                   "$name - response_body_$type - response is expected "
                   . "($summary)");
        }
    }

    $_->($block, $content, $idx, $rep, 0) for @ResponseBodyChecks;
}

# "Name: value" lines as [name, value]; "!Name" (value undef) means absent.
sub parse_headers {
    my ($text) = @_;
    my @headers;
    for my $line (split /\n/, $text // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) {
            push @headers, [$line, undef];
        } else {
            push @headers, [split /\s*:\s*/, $line, 2];
            $headers[-1][1] //= '';
        }
    }
    return @headers;
}

# A body shortened to one line for a test name.
sub summary {
    my ($s) = @_;
    return '' unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\s+/ /g;
    return length $s > 80 ? substr($s, 0, 77) . '...' : $s;
}

sub fmt_str {
    my ($s) = @_;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# ---- logs --------------------------------------------------------------------

# Runs after every response (and before the next one): --- grep_error_log,
# --- error_log and --- no_error_log against the error log written since the
# previous check (all of it with check_accum_error_log()).
sub check_error_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $lines;

    my $grep_pat = section($block, 'grep_error_log');
    my $grep_out = section($block, 'grep_error_log_out');
    bail_out("$name - No --- grep_error_log defined but --- "
             . "grep_error_log_out is defined")
        if defined $grep_out && !defined $grep_pat;
    if (defined $grep_pat) {
        bail_out("$name - No --- grep_error_log_out defined but --- "
                 . "grep_error_log is defined") unless defined $grep_out;
        $grep_pat = $grep_pat->[$rep] if ref $grep_pat eq 'ARRAY';
        my $expected = ref $grep_out eq 'ARRAY' ? $grep_out->[$rep] : $grep_out;

        $lines //= error_log_data();
        my $matched = '';
        for my $line (@$lines) {
            my $hit = ref $grep_pat ? $line =~ $grep_pat
                                    : $line =~ /\Q$grep_pat\E/;
            next unless $hit;
            my $m = substr($line, $-[0], $+[0] - $-[0]);
            $matched .= "$m\n" unless $m =~ /\n/;
        }

        my $desc = "$name - grep_error_log_out (req $rep)";
        if (ref $expected eq 'Regexp') {
            like($matched, $expected, $desc);
        } elsif ($NoLongString) {
            Test::Base::is($matched, $expected, $desc);
        } else {
            is_string($matched, $expected, $desc);
        }
    }

    if (defined(my $pats = section($block, 'error_log'))) {
        $lines //= error_log_data();
        check_patterns_found($name, $pats, $lines, 'error.log', $rep);
    }
    if (defined(my $pats = section($block, 'no_error_log'))) {
        $lines //= error_log_data();
        check_patterns_absent($name, $pats, $lines, 'error.log', $rep);
    }
}

sub check_access_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $lines;

    if (defined(my $pats = section($block, 'access_log'))) {
        $lines //= access_log_data();
        check_patterns_found($name, $pats, $lines, 'access.log', $rep);
    }
    if (defined(my $pats = section($block, 'no_access_log'))) {
        $lines //= access_log_data();
        check_patterns_absent($name, $pats, $lines, 'access.log', $rep);
    }
}

# A section's patterns: one literal substring per line, or an eval'ed qr// or
# array mixing strings and qr//.
sub pattern_list {
    my ($pats) = @_;
    return @$pats if ref $pats eq 'ARRAY';
    return ($pats) if ref $pats;
    chomp $pats;
    return split /\n+/, $pats;
}

sub line_matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

# One subtest per pattern.
sub check_patterns_found {
    my ($name, $pats, $lines, $log, $rep) = @_;
    for my $pat (pattern_list($pats)) {
        if (grep { line_matches($_, $pat) } @$lines) {
            pass("$name - pattern \"$pat\" matches a line in $log (req $rep)");
        } else {
            fail("$name - pattern \"$pat\" should match a line in $log "
                 . "(req $rep)");
        }
    }
}

# One passing subtest per absent pattern, one failing subtest per matching
# line (with the lines that follow it), as in CPAN.
sub check_patterns_absent {
    my ($name, $pats, $lines, $log, $rep) = @_;
    for my $pat (pattern_list($pats)) {
        my $p = fmt_str("$pat");
        my $found = 0;
        for my $i (0 .. $#$lines) {
            next unless line_matches($lines->[$i], $pat);
            $found = 1;
            my @more = @$lines[$i + 1 .. min($i + 9, $#$lines)];
            fail("$name - pattern \"$p\" should not match any line in $log "
                 . "but matches line \"" . fmt_str($lines->[$i])
                 . "\" (req $rep)\n" . join('', @more));
        }
        pass("$name - pattern \"$p\" does not match a line in $log (req $rep)")
            unless $found;
    }
}

1;
__END__

=encoding utf-8

=head1 NAME

Test::Nginx::Socket - the project's runner for Test::Nginx::Socket-format
test files

=head1 SYNOPSIS

    use Test::Nginx::Socket 'no_plan';   # or: plan tests => ...;

    repeat_each(2);
    no_shuffle();
    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
        location = /t { echo hello; }
    --- request
    GET /t
    --- response_body
    hello
    --- no_error_log
    [error]

Run with C<prove -It/lib -r t/>.  Without C<-It/lib> the same files run under
CPAN's Test::Nginx (the reference for every section's meaning).

=head1 DIFFERENCES FROM CPAN

=over

=item *

nginx runs in the foreground as a child of the test (C<daemon off>), is
restarted for every block and stopped at its end (SIGQUIT, then SIGKILL to
its process group after 5 s, 60 s under valgrind).  It is never left behind,
even when the test dies or is interrupted, except on purpose with
C<TEST_NGINX_NO_CLEAN=1> (the last block's server stays up).

=item *

Each test file picks a free port (10000 up to the kernel's ephemeral range)
unless C<TEST_NGINX_SERVER_PORT> or C<TEST_NGINX_PORT> is set, and uses the
server root F<t/servroot-E<lt>fileE<gt>/> (C<TEST_NGINX_SERVROOT> overrides),
so C<prove -j> works.  A second run of the same file at the same time (two
people testing in one checkout) finds that server root locked and uses
F<t/servroot-E<lt>fileE<gt>-E<lt>pidE<gt>/>, removed when it exits.
C<$ENV{TEST_NGINX_SERVER_PORT}> and C<$ENV{TEST_NGINX_SERVER_ROOT}> are set as
soon as the module is loaded.

=item *

nginx's stderr is appended to the block's F<error.log>: Debian's nginx reports
startup errors there, so C<--- must_die> blocks can check them with
C<--- error_log>.

=item *

Temp paths (C<client_body_temp_path> and the proxy, fastcgi, uwsgi and scgi
ones) point into the server root, unless C<--- http_config> sets them.
C<worker_connections> defaults to 1024 (CPAN: 64); call
C<worker_connections(1024)> in a suite that needs many connections under CPAN.

=item *

A block fails (on top of its own checks) when its error log has an
C<[alert]>, C<[crit]> or C<[emerg]> line, "exited on signal" or a failed
assertion, unless its C<--- error_log>/C<--- no_error_log> patterns mention
that word; when nginx dies before the end of the block, or exits on a signal
or with an error status on SIGQUIT.  CPAN only warns.  These subtests exist
only when they fail, so passing blocks keep CPAN's subtest counts.

=item *

A block without C<--- config> runs against a fresh nginx with the previous
block's configuration (CPAN keeps the previous server running).

=item *

C<$TEST_NGINX_*> variables are expanded in C<main_config>, C<http_config>,
C<config>, C<post_main_config> and C<user_files>, as in CPAN; not in requests
or headers (use C<--- request eval> and C<$ENV{...}>).

=item *

Not supported: C<tcp_listen>/C<udp_listen> (mock servers), C<http2>,
C<http3>, C<todo>, C<skip_nginx2>, C<skip_openssl>, C<response_body_filters>,
C<shutdown_error_log>, C<error_log_file>, C<http09>, C<charset>, the HUP,
check-leak and benchmark modes.  A block using one of these sections bails
out.  C<--- curl> is ignored; C<--- stap> skips one subtest as CPAN does
without systemtap; C<--- no_check_leak> is accepted and has no effect.

=back

=head1 FUNCTIONS

Exported: C<run_tests>, C<repeat_each>, C<workers>, C<worker_connections>,
C<master_on>, C<master_off>, C<master_process_enabled>, C<log_level>,
C<no_shuffle>, C<no_root_location>, C<check_accum_error_log>,
C<no_long_string>, C<env_to_nginx>, C<timeout>, C<server_name>,
C<server_port>, C<server_port_for_client>, C<server_root>, C<html_dir>,
C<add_block_preprocessor>, C<add_response_body_check>,
C<add_cleanup_handler>, C<bail_out>, C<is_str>, plus Test::Base's and
Test::More's (C<plan>, C<blocks>, C<is>, C<like>, ...).

=head2 Project-only: free_port

C<Test::Nginx::Socket::free_port()> returns a TCP port nobody listens on
(never the same twice in one test file), for backends a suite starts itself.
It is not exported and CPAN does not have it, so a suite that must also run
under CPAN uses it like this:

    $ENV{TEST_NGINX_PAYMENT_PORT} ||= Test::Nginx::Socket->can('free_port')
        ? Test::Nginx::Socket::free_port() : 1985;

C<$TEST_NGINX_RAND_PORT_1>, C<_2>, ... in the configuration sections (a free
port per name and block) work under both.

=head1 SECTIONS

C<main_config>, C<post_main_config>, C<http_config>, C<config>,
C<server_name>, C<log_level>, C<user_files>, C<init>, C<request> (string,
C<eval> string, array of requests, arrays of packets with C<delay_before>),
C<raw_request>, C<raw_request_middle_delay>, C<pipelined_requests>,
C<more_headers> (string or array), C<shutdown>, C<timeout>, C<abort>,
C<ignore_response>, C<wait>, C<error_code>, C<error_code_like>,
C<response_headers>, C<response_headers_like>, C<raw_response_headers_like>,
C<raw_response_headers_unlike>, C<response_body>, C<response_body_like>,
C<response_body_unlike>, C<error_log>, C<no_error_log>, C<grep_error_log>,
C<grep_error_log_out>, C<access_log>, C<no_access_log>, C<must_die>,
C<skip_eval>, C<skip_nginx>, C<no_check_leak>, C<ONLY>, C<SKIP>, C<LAST>.

=head1 ENVIRONMENT

C<TEST_NGINX_BINARY> (default: F<nginx> on C<PATH>, else F</usr/sbin/nginx>),
C<TEST_NGINX_LOAD_MODULES> (space-separated F<.so> paths; use absolute ones),
C<TEST_NGINX_SERVER_PORT>, C<TEST_NGINX_PORT>, C<TEST_NGINX_CLIENT_PORT>,
C<TEST_NGINX_SERVROOT>, C<TEST_NGINX_NO_SHUFFLE>, C<TEST_NGINX_LOG_LEVEL>
(default C<debug>), C<TEST_NGINX_MASTER_PROCESS> (default C<off>),
C<TEST_NGINX_NO_CLEAN>, C<TEST_NGINX_TIMEOUT> (default client timeout, 3 s),
C<TEST_NGINX_SLEEP> (pause unit, 0.015 s), C<TEST_NGINX_CHECK_ACCUM_ERR_LOG>,
C<TEST_NGINX_USE_VALGRIND>.

=head2 Valgrind

C<TEST_NGINX_USE_VALGRIND=1> runs nginx (master process off) under
C<valgrind --tool=memcheck --leak-check=full --show-possibly-lost=no
--num-callers=30>; any other value is the valgrind options to use instead.
F<t/valgrind.suppress> (or F<valgrind.suppress>) is used when present.
valgrind writes to F<logs/valgrind.log> in the server root; after nginx has
stopped, every "Invalid read/write/free", "Mismatched free", "Conditional
jump", "Use of uninitialised", "Syscall param ... uninitialised", "Source and
destination overlap" or "Process terminating" record, and every
"definitely lost" record with a frame matching
C<$Test::Nginx::Util::LeakFramePattern> (the module's code), fails the block
and is printed.  C<--- must_die> blocks run without valgrind.

=cut
