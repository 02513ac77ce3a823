#!/usr/bin/env bash
# Runs the suites with prove (called by `make test`):
#
#   scripts/run-tests.sh [FILE.t ...]
#
# env: NGINX_BIN (the binary, default /usr/sbin/nginx), MODULES (the .so files to
# load_module), PROVE_FLAGS, TEST_NGINX_USE_VALGRIND.
# Whatever nginx the suites leave running under t/servroot* is stopped at the
# end, whether prove passed, failed or was interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ $# -eq 0 ]; then
    echo "run-tests: no test files (t/*.t)" >&2
    exit 1
fi

# (not $NGINX: nginx reads that variable as inherited listening sockets)
unset NGINX
export TEST_NGINX_BINARY=${NGINX_BIN:-/usr/sbin/nginx}
export TEST_NGINX_LOAD_MODULES=${MODULES:?MODULES: the .so files to load}
export TEST_NGINX_USE_VALGRIND=${TEST_NGINX_USE_VALGRIND:-}
[ -n "$TEST_NGINX_USE_VALGRIND" ] || unset TEST_NGINX_USE_VALGRIND

for m in $TEST_NGINX_LOAD_MODULES; do
    [ -f "$m" ] || { echo "run-tests: missing module $m" >&2; exit 1; }
done

# Stops the nginx processes left in the server roots of the files run here
# (t/servroot-NAME for t/NAME.t), and no one else's: a concurrent run of
# other files in the same checkout keeps its servers.
stop_leftovers() {
    local pidfile pid f
    shopt -s nullglob
    for f in "${files[@]}"; do
        pidfile="$root/t/servroot-$(basename "$f" .t)/logs/nginx.pid"
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null || true)
        case $pid in ''|*[!0-9]*) continue ;; esac
        # only an nginx (or valgrind running nginx) still alive
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q nginx; then
            echo "run-tests: stopping leftover nginx $pid ($pidfile)" >&2
            scripts/stop-nginx.sh "$pid" || true
        fi
    done
}
files=("$@")
trap stop_leftovers EXIT

echo "run-tests: nginx $TEST_NGINX_BINARY, modules: $TEST_NGINX_LOAD_MODULES${TEST_NGINX_USE_VALGRIND:+, under valgrind}"
# shellcheck disable=SC2086
prove -I t/lib ${PROVE_FLAGS:-} "$@"
