# The worker's files call one way, down the layers (docs/internals.md): a
# file calls only files listed after it in SRCS (worker/Makefile), and
# results come back up through callbacks. Each file is compiled alone and
# its undefined symbols (nm -u) looked up among the others' definitions: a
# call up the list, a cycle, fails here.

use strict;
use warnings;
use Test::More;
use Cwd qw(abs_path);
use FindBin ();
use File::Temp qw(tempdir);

my $root = abs_path("$FindBin::Bin/..");
my $worker = "$root/worker";

sub have { system("$_[0] >/dev/null 2>&1") == 0 }

have('command -v nm') or plan skip_all => 'nm is not installed';
have('command -v ' . ($ENV{CC} || 'cc'))
    or plan skip_all => 'no C compiler';

# the generated script headers come from the worker's own build
delete local @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL)};
my $out = `make -C '$worker' '$root/build/worker/checkout-worker' 2>&1`;
is($?, 0, 'the worker builds') or diag($out), done_testing(), exit;

open my $mk, '<', "$worker/Makefile" or die "$worker/Makefile: $!";
my $text = do { local $/; <$mk> };
my ($list) = $text =~ /^SRCS\s*:=\s*((?:.*\\\n)*.*)$/m;
$list =~ s/\\\n/ /g;
my @srcs = split ' ', $list;
ok(@srcs > 10, 'SRCS lists the worker\'s files') or diag($list);

my $dir = tempdir(CLEANUP => 1);
my $cc = $ENV{CC} || 'cc';
my (%defines, %needs);
for my $src (@srcs) {
    (my $name = $src) =~ s/\.c$//;
    my $obj = "$dir/$name.o";
    my $err = `cd '$worker' && $cc -std=c99 -c -I. -I'$root/contract' \\
               -I'$root/build/worker/lua' -o '$obj' $src 2>&1`;
    is($?, 0, "$src compiles alone") or diag($err);
    for (`nm --defined-only -g '$obj'`) {
        $defines{$1} = $name if /\s[A-Z]\s+(\S+)$/;
    }
    $needs{$name} = [map { /\sU\s+(\S+)$/ ? $1 : () } `nm -u '$obj'`];
}

my %rank;
@rank{map { (my $n = $_) =~ s/\.c$//; $n } @srcs} = 0 .. $#srcs;
for my $name (sort { $rank{$a} <=> $rank{$b} } keys %needs) {
    my @up = grep {
        my $to = $defines{$_};
        defined $to && $to ne $name && $rank{$to} < $rank{$name}
    } @{ $needs{$name} };
    ok(!@up, "$name.c calls only files listed after it")
        or diag(join "\n", map { "$_ is defined in $defines{$_}.c, listed "
                                 . "before $name.c" } @up);
}

done_testing();
