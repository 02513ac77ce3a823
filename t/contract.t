# The contract's tools (contract/): lua2c.awk, which turns a Lua script into
# a C header with named slots, refuses what would let C and Lua disagree,
# and every Lua script of both programs writes only names the contract
# header defines (or Redis's own words), so a name changed on one side only
# fails here before it fails end to end (t/030-end-to-end.t).

use strict;
use warnings;
use Test::More;
use Cwd qw(abs_path);
use FindBin ();
use File::Temp qw(tempdir);

my $root = abs_path("$FindBin::Bin/..");
my $awk = "$root/contract/lua2c.awk";
my $dir = tempdir(CLEANUP => 1);

# Runs lua2c on the given scripts (text), the last the script, the others
# its preludes; returns (exit code, stdout, stderr).
sub lua2c {
    my ($prefix, @texts) = @_;
    my @files;
    for my $i (0 .. $#texts) {
        my $f = "$dir/s$i.lua";
        open my $fh, '>', $f or die "$f: $!";
        print $fh $texts[$i];
        close $fh;
        push @files, $f;
    }
    my $out = `awk -v prefix=$prefix -f $awk @files 2>$dir/err`;
    my $rc = $? >> 8;
    open my $eh, '<', "$dir/err" or die;
    my $err = do { local $/; <$eh> };
    return ($rc, $out, $err);
}

sub defines {
    my ($out) = @_;
    my %d;
    $d{$1} = $2 while $out =~ /^#define (\w+)  (.+)$/mg;
    return \%d;
}

# --- a good script --------------------------------------------------------

my $good = <<'LUA';
-- good.lua
--
-- KEYS[1] stream        the stream
-- KEYS[2] state         the hash
-- ARGV[1] group         a name
-- ARGV[2] id            an "id" with \ in it
-- ARGV[3..] first_id    the rest

    if redis.call('EXISTS', state) == 1 then
        return {group, id, #ARGV - first_id + 1}
    end
return "a \"quoted\" \\ string"
LUA

my ($rc, $out, $err) = lua2c('T_GOOD', $good);
is($rc, 0, 'a good script is taken') or diag($err);
my $d = defines($out);
is_deeply([@$d{qw(T_GOOD_NUMKEYS T_GOOD_STREAM T_GOOD_STATE T_GOOD_GROUP
                  T_GOOD_ID T_GOOD_FIRST_ID T_GOOD_ARGC)}],
          ['"2"', 3, 4, 5, 6, 7, 7],
          'slots are indexes in EVAL script numkeys KEYS ARGV; ARGC stops '
          . 'before the open-ended rest');

# The text as C would see it: compile it and print it.
my $c = "$dir/show.c";
open my $ch, '>', $c or die;
print $ch $out, "\n#include <stdio.h>\nint main(void) "
        . "{ fputs(T_GOOD_LUA, stdout); return 0; }\n";
close $ch;
SKIP: {
    skip 'no C compiler', 4
        unless system("cc -o $dir/show $c 2>$dir/cc.err") == 0;
    my $text = `$dir/show`;
    my @lines = split /\n/, $text, -1;
    is($lines[0], 'local stream = KEYS[1] local state = KEYS[2] '
                  . 'local group = ARGV[1] local id = ARGV[2] '
                  . 'local first_id = 3',
       'line 1 binds each slot to its name');
    is(scalar(@lines) - 1, scalar(split /\n/, $good),
       'the text has as many lines as the file: Redis error lines match');
    is($lines[8], "if redis.call('EXISTS', state) == 1 then",
       'indentation is dropped, code kept on its own line');
    is($lines[11], 'return "a \"quoted\" \\\\ string"',
       'quotes and backslashes survive the C string');
}

# --- preludes ---------------------------------------------------------------

($rc, $out, $err) = lua2c('T_PRE', "-- shared\nlocal function f(x)\n"
                          . "    return x\nend\n", $good);
is($rc, 0, 'a prelude is taken') or diag($err);
like($out, qr/local\ first_id\ =\ 3\\n"\ \\\n
               \ {4}"\\n"\ \\\n
               \ {4}"local\ function\ f\(x\)\\n"/x,
     'the prelude comes right after the slots line');

($rc, $out, $err) = lua2c('T_PRE', "-- shared\nreturn KEYS\n", $good);
isnt($rc, 0, 'a prelude that uses KEYS is refused');
like($err, qr/a prelude uses KEYS or ARGV/, '... and the error says so');

# --- refusals -------------------------------------------------------------

my @bad = (
    ['a slot used by number',
     "-- x\n-- KEYS[1] a\nreturn KEYS[1]\n",
     qr/s0\.lua:3: KEYS and ARGV are used by name/],
    ['a number skipped',
     "-- x\n-- ARGV[1] a\n-- ARGV[3] b\nreturn a\n",
     qr/s0\.lua:3: ARGV\[3\] follows ARGV\[1\]/],
    ['a name used twice',
     "-- x\n-- KEYS[1] a\n-- ARGV[1] a\nreturn a\n",
     qr/slot name "a" is taken/],
    ['a name Lua has',
     "-- x\n-- ARGV[1] type\nreturn type\n",
     qr/slot name "type" is taken/],
    ['a slot after the open-ended one',
     "-- x\n-- ARGV[1..] a\n-- ARGV[2] b\nreturn a\n",
     qr/ARGV\[2\] follows the open-ended a/],
    ['open-ended KEYS',
     "-- x\n-- KEYS[1..] a\nreturn a\n",
     qr/only the last ARGV may be open-ended/],
    ['a first line that is code',
     "return 1\n-- KEYS[1] a\n",
     qr/s0\.lua:1: the first line must be a comment/],
);
for my $case (@bad) {
    my ($what, $text, $why) = @$case;
    my ($brc, $bout, $berr) = lua2c('T_BAD', $text);
    isnt($brc, 0, "$what is refused");
    like($berr, $why, "... and the error says where and why");
}

($rc, $out, $err) = lua2c('bad-prefix', $good);
isnt($rc, 0, 'a prefix that is not a C name is refused');

# --- every script writes only the contract's names --------------------------

# The header's strings, and what Redis itself calls things: commands and
# options (upper case), XINFO's reply keys, and a few symbols; numbers and
# format strings.
open my $hh, '<', "$root/contract/checkout_contract.h" or die;
my $header = do { local $/; <$hh> };
my %known = map { $_ => 1 } ($header =~ /"([^"\\]*)"/g);
$known{$_} = 1 for qw(name pending idle last-delivered-id ~ * + - -inf);

my @scripts = (glob("$root/ngx_checkout_module/lua/*.lua"),
               glob("$root/worker/lua/*.lua"));
ok(@scripts >= 2, 'the Lua scripts are found') or diag("none under $root");

for my $file (@scripts) {
    open my $fh, '<', $file or die "$file: $!";
    my (@unknown, $n);
    while (my $line = <$fh>) {
        next if $line =~ /^\s*--/;
        for my $s ($line =~ /'([^']*)'/g) {
            next if $s eq '' || $s =~ /^([A-Z]+|\d+)$/ || $s =~ /%/
                    || $known{$s};
            push @unknown, "$s (line $.)";
        }
    }
    (my $short = $file) =~ s{^\Q$root\E/}{};
    ok(!@unknown, "$short names only what contract/checkout_contract.h does")
        or diag("not in the contract: @unknown");
}

done_testing();
