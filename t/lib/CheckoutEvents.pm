package CheckoutEvents;

# What the ngx_checkout suites with Redis (t/008..010) share: a private
# redis-server (t/lib/CheckoutRedis.pm), a spool directory, and assertions
# on what a checkout left in Redis.  Test::Nginx::Socket format, public hooks
# only, so the suites also run under CPAN's Test::Nginx:
#
#     use Test::Nginx::Socket 'no_plan';
#     use FindBin ();
#     BEGIN { push @INC, "$FindBin::Bin/lib" }
#     use CheckoutEvents ();
#     CheckoutEvents::setup();     # redis-server, spool dir, mock services
#
# setup() starts the redis-server ($TEST_NGINX_REDIS_PORT,
# $TEST_NGINX_REDIS_UNIX), makes a spool directory ($TEST_NGINX_SPOOL_DIR,
# removed at exit), calls CheckoutTest::use_mock_services() and adds a block
# preprocessor that, before every block (before its nginx starts):
#   - makes sure the redis-server runs (restarted if a block stopped it,
#     resumed if a block paused it), with --- redis_requirepass when the
#     block has one (the server is then started again with that password,
#     on a new port: configs say $TEST_NGINX_REDIS_PORT);
#   - empties every database (FLUSHALL) and the spool directory.
#
# Sections, checked after each reply (the reply's "checkoutId" is the
# checkout; "$checkoutId" in a line is replaced by it):
#   --- redis_stream: NAME   the stream of the block (default checkout:events)
#   --- redis_event          the stream has exactly one entry whose ce_id is
#                            the checkout's; one assertion per line on it,
#                            its fields plus "data" decoded from JSON
#   --- redis_no_event       the stream has no entry at all
#   --- redis_state          the hash checkout:<id> exists; one assertion per
#                            line on its fields plus "_ttl" (TTL, seconds)
# Lines are CheckoutTest::check_json_lines() lines, plus:
#   PATH recent-ms SECONDS   "YYYY-MM-DDTHH:MM:SS.mmmZ", within SECONDS of now
#   PATH recent SECONDS      any RFC 3339 date-time, within SECONDS of now
#   PATH between LO HI       a number, LO <= n <= HI
#   PATH keys: [JSON array]  an object with exactly these keys
# A section may be an array (--- redis_event eval) for blocks with several
# requests: one element per reply.

use strict;
use warnings;

use CheckoutRedis ();
use CheckoutTest ();
use File::Temp qw(tempdir);
use JSON::PP ();
use Test::More ();
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);

our $DefaultStream = 'checkout:events';
our $SpoolDir;

my $JSON = JSON::PP->new->utf8->allow_nonref;
my $CANON = JSON::PP->new->canonical->allow_nonref;
my $RequirePass;    # the running server's password, undef: none

sub setup {
    my (%o) = @_;

    CheckoutRedis::start();
    $SpoolDir = tempdir('checkout-spool-XXXXXXXX', DIR => '/tmp',
                        CLEANUP => 1);
    $ENV{TEST_NGINX_SPOOL_DIR} = $SpoolDir;

    CheckoutTest::use_mock_services(%o);

    CheckoutTest::runner_hook('add_block_preprocessor')->(\&before_block);
    CheckoutTest::runner_hook('add_response_body_check')->(\&_body_check);
}

# ---- before each block ---------------------------------------------------------

sub before_block {
    my ($block) = @_;
    my $pass = scalar $block->redis_requirepass;
    if (defined $pass) {
        $pass =~ s/^\s+|\s+$//g;
        $pass = undef if $pass eq '';
    }
    ensure_redis($pass);
    CheckoutRedis::flush();
    clear_spool();
}

# The server running, with this password (undef: none), not paused.
sub ensure_redis {
    my ($pass) = @_;
    my $same = (defined $pass ? $pass : "\0") eq
               (defined $RequirePass ? $RequirePass : "\0");
    if (!$same) {
        CheckoutRedis::stop();
        CheckoutRedis::start(defined $pass ? (requirepass => $pass) : ());
        $RequirePass = $pass;
    } elsif (!CheckoutRedis::pid()) {
        CheckoutRedis::restart();
    } else {
        CheckoutRedis::resume();
    }
    # a block may have changed it
    CheckoutRedis::cmd('CONFIG', 'SET', 'stream-node-max-entries', '100');
}

sub spool_dir { $SpoolDir }

sub spool_files {
    opendir my $dh, $SpoolDir or return ();
    my @f = sort grep { !/^\.\.?$/ } readdir $dh;
    closedir $dh;
    return @f;
}

sub clear_spool {
    unlink map { "$SpoolDir/$_" } spool_files();
}

# The lines of all spool files (each a JSON array: the command).
sub spool_lines {
    my @lines;
    for my $f (spool_files()) {
        open my $in, '<', "$SpoolDir/$f" or next;
        push @lines, grep { /\S/ } <$in>;
    }
    return @lines;
}

# ---- processes and logs -----------------------------------------------------

# A pid no process has now, for the spool file of a worker that is gone.
sub dead_pid {
    for my $pid (reverse 4194305 .. 4194400, 300000 .. 300100) {
        return $pid unless kill 0, $pid or $!{EPERM};
    }
    die "no free pid found\n";
}

# The child processes of $ppid (nginx's workers), in pid order.
sub children {
    my ($ppid) = @_;
    my @kids;
    opendir my $dh, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open my $in, '<', "/proc/$pid/stat" or next;
        my $stat = <$in> // next;
        # pid (comm) state ppid ...
        push @kids, $pid if $stat =~ /\)\s+\S+\s+(\d+)/ && $1 == $ppid;
    }
    return sort { $a <=> $b } @kids;
}

# The lines of the block's error log so far.
sub error_log_lines {
    open my $in, '<', $Test::Nginx::Util::ErrLogFile or return ();
    return <$in>;
}

# ---- looking at Redis -------------------------------------------------------------

sub stream_name {
    my ($block) = @_;
    my $s = $block ? scalar $block->redis_stream : undef;
    if (defined $s) {
        $s =~ s/^\s+|\s+$//g;
        return $s if $s ne '';
    }
    return $DefaultStream;
}

# The stream's entries as [id, {fields}], [] when there is no such stream.
sub entries {
    my ($stream) = @_;
    return [ CheckoutRedis::xrange($stream || $DefaultStream) ];
}

# ce_id => number of entries
sub counts {
    my ($stream) = @_;
    my %n;
    $n{ $_->[1]{ce_id} // '' }++ for @{ entries($stream) };
    return \%n;
}

# Waits (bounded) until every id has at least one entry; returns counts().
sub wait_for_events {
    my ($ids, $timeout, $stream) = @_;
    my $counts = {};
    CheckoutRedis::wait_for(sub {
        $counts = counts($stream);
        !grep { !$counts->{$_} } @$ids;
    }, $timeout || 10);
    return $counts;
}

# One assertion: every id has exactly one entry.  On failure, says which.
sub exactly_once {
    my ($desc, $ids, $counts) = @_;
    my @bad = grep { ($counts->{$_} || 0) != 1 } @$ids;
    Test::More::ok(@$ids && !@bad, $desc)
        or Test::More::diag(@$ids ? "entries per ce_id: "
            . join(', ', map { "$_=" . ($counts->{$_} || 0) } @bad)
            : "no checkout ids");
}

sub event_doc {
    my ($fields) = @_;
    my %doc = %$fields;
    if (defined $doc{data}) {
        my $d = eval { $JSON->decode($doc{data}) };
        $doc{data} = $d if ref $d eq 'HASH';
    }
    return \%doc;
}

sub state_doc {
    my ($id) = @_;
    my $h = CheckoutRedis::hgetall("checkout:$id");
    return undef unless %$h;
    $h->{_ttl} = CheckoutRedis::cmd('TTL', "checkout:$id");
    return $h;
}

# Seconds since the epoch of an RFC 3339 date-time (undef if it is not one);
# with $ms_z only the "YYYY-MM-DDTHH:MM:SS.mmmZ" form.
sub rfc3339 {
    my ($s, $ms_z) = @_;
    return undef unless defined $s && !ref $s;
    my $re = $ms_z
        ? qr/^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d{3})(Z)$/
        : qr/^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?
             ([Zz]|[+-]\d\d:\d\d)$/x;
    my ($y, $mo, $d, $h, $mi, $sec, $frac, $tz) = $s =~ $re or return undef;
    return undef if $mo < 1 || $mo > 12 || $d < 1 || $d > 31
                    || $h > 23 || $mi > 59 || $sec > 60;
    my $t = eval { timegm($sec > 59 ? 59 : $sec, $mi, $h, $d, $mo - 1, $y) };
    return undef unless defined $t;
    $t += $frac if $frac;
    if ($tz =~ /^([+-])(\d\d):(\d\d)$/) {
        $t -= ($1 eq '-' ? -1 : 1) * ($2 * 3600 + $3 * 60);
    }
    return $t;
}

# ---- assertions ---------------------------------------------------------------------

sub check_lines {
    my ($name, $doc, $spec, $id) = @_;
    my @plain;
    for my $line (split /\n/, $spec) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '' || $line =~ /^#/;
        $line =~ s/\$checkoutId\b/$id/g if defined $id;
        my $desc = "$name - $line";
        if ($line =~ /^(\S+)\s+(recent|recent-ms)\s+([\d.]+)$/) {
            my ($path, $kind, $secs) = ($1, $2, $3);
            my ($exists, $v) = CheckoutTest::json_path($doc, $path);
            my $t = $exists ? rfc3339($v, $kind eq 'recent-ms') : undef;
            my $now = time;
            Test::More::ok(defined $t && abs($now - $t) <= $secs, $desc)
                or Test::More::diag("got: " . ($exists ? $CANON->encode($v)
                                                       : '<absent>')
                    . sprintf(" (now %.3f, %s)", $now,
                              defined $t ? sprintf("%.3f", $t)
                                         : 'not the expected format'));
        } elsif ($line =~ /^(\S+)\s+between\s+(-?[\d.]+)\s+(-?[\d.]+)$/) {
            my ($path, $lo, $hi) = ($1, $2, $3);
            my ($exists, $v) = CheckoutTest::json_path($doc, $path);
            my $ok = $exists && defined $v && !ref $v
                     && $v =~ /^-?\d+(?:\.\d+)?$/ && $v >= $lo && $v <= $hi;
            Test::More::ok($ok, $desc)
                or Test::More::diag("got: " . ($exists ? $CANON->encode($v)
                                                       : '<absent>'));
        } elsif ($line =~ /^(\S+)\s+keys:\s*(\[.*\])$/) {
            my ($path, $want) = ($1, $2);
            my ($exists, $v) = CheckoutTest::json_path($doc, $path);
            my $w = eval { $JSON->decode($want) } || [];
            my $got = $exists && ref $v eq 'HASH' ? [sort keys %$v] : undef;
            Test::More::is($got ? $CANON->encode($got) : '<not an object>',
                           $CANON->encode([sort @$w]), $desc);
        } else {
            push @plain, $line;
        }
    }
    CheckoutTest::check_json_lines($name, $doc, join("\n", @plain))
        if @plain;
}

sub _pick {
    my ($v, $idx) = @_;
    return ref $v eq 'ARRAY' ? $v->[$idx] : $v;
}

sub _body_check {
    my ($block, $body, $idx, $rep, $dry_run) = @_;
    return if $dry_run;
    $idx ||= 0;
    my $name = $block->name;

    my $event = _pick(scalar $block->redis_event, $idx);
    my $no_event = _pick(scalar $block->redis_no_event, $idx);
    my $state = _pick(scalar $block->redis_state, $idx);
    return unless defined $event || defined $no_event || defined $state;

    my $reply = CheckoutTest::json_decode($body // '');
    my $id = ref $reply eq 'HASH' ? $reply->{checkoutId} : undef;
    if (!defined $id || $id !~ CheckoutTest::id_re()) {
        Test::More::fail("$name - the reply names a checkout (req $idx)");
        Test::More::diag("body: " . ($body // '<none>'));
        return;
    }

    my $stream = stream_name($block);

    if (defined $no_event) {
        my $n = CheckoutRedis::xlen($stream);
        Test::More::is($n, 0, "$name - no entry in $stream (req $idx)");
    }

    if (defined $event) {
        my @mine = grep { ($_->[1]{ce_id} // '') eq $id }
                   @{ entries($stream) };
        Test::More::is(scalar @mine, 1,
            "$name - exactly one entry with ce_id $id in $stream (req $idx)");
        if (@mine) {
            my $doc = event_doc($mine[0][1]);
            Test::More::ok(ref $doc->{data} eq 'HASH',
                           "$name - the entry's data is a JSON object")
                or Test::More::diag("data: " . ($mine[0][1]{data} // '<none>'));
            check_lines("$name - event", $doc, $event, $id);
        }
    }

    if (defined $state) {
        my $doc = state_doc($id);
        Test::More::ok($doc, "$name - state hash checkout:$id exists "
                             . "(req $idx)");
        check_lines("$name - state", $doc || {}, $state, $id) if $doc;
    }
}

1;
