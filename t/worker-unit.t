# The worker's C unit tests (worker/tests/test_*.c, Check) under prove: builds
# them with `make -C worker`, runs each binary and reports one test per
# binary, its output as diagnostics (on failure; with prove -v also on
# success). Skipped when the build's tools are missing (a C compiler, make,
# Check through pkg-config); a build that fails for any other reason fails.
# With TEST_NGINX_USE_VALGRIND set (make test-valgrind) each binary runs under
# valgrind, leaks included.

use strict;
use warnings;
use Test::More;
use Cwd qw(abs_path);
use FindBin ();
use File::Basename qw(basename);

my $root = abs_path("$FindBin::Bin/..");

sub have {
    my ($cmd) = @_;
    return system("$cmd >/dev/null 2>&1") == 0;
}

have('command -v make') or plan skip_all => 'make is not installed';
have('command -v ' . ($ENV{CC} || 'cc'))
    or plan skip_all => 'no C compiler (' . ($ENV{CC} || 'cc') . ')';
have('pkg-config --exists check')
    or plan skip_all => 'the worker unit tests need Check: '
                      . 'apt-get install check pkg-config';

my $valgrind = $ENV{TEST_NGINX_USE_VALGRIND};
if ($valgrind && !have('command -v valgrind')) {
    plan skip_all => 'TEST_NGINX_USE_VALGRIND is set but valgrind is not '
                   . 'installed';
}

# A make above this one (make test) must not hand its job server down.
delete local @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL)};

my $out = `make -C '$root/worker' all 2>&1`;
if ($? != 0) {
    fail('make -C worker all');
    diag($out);
    done_testing();
    exit;
}

my @tests = map { basename($_, '.c') } sort glob("$root/worker/tests/test_*.c");
BAIL_OUT('no worker/tests/test_*.c') unless @tests;

for my $name (@tests) {
    my $bin = "$root/build/worker/$name";
    my $cmd = $valgrind
        ? "CK_FORK=no valgrind --quiet --leak-check=full "
          . "--show-leak-kinds=all --errors-for-leak-kinds=all "
          . "--error-exitcode=1 '$bin'"
        : "'$bin'";
    my $output = `$cmd 2>&1`;
    my $status = $?;

    if (ok($status == 0, "worker unit tests: $name")) {
        note($output);
    } else {
        diag("$cmd: exit status " . ($status >> 8)
             . ($status & 127 ? ", signal " . ($status & 127) : ''));
        diag($output);
    }
}

done_testing();
