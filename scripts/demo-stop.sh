#!/usr/bin/env bash
# `make demo-stop`: stops the demo started by `make demo` (its nginx, from
# .demo/nginx.pid): QUIT, then TERM and KILL if it does not go (scripts/stop-nginx.sh).
#
#   scripts/demo-stop.sh [--quiet]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

quiet=
[ "${1:-}" = --quiet ] && quiet=1

# Redis first or last does not matter: nginx spools what Redis cannot take
if redis-cli -p 6380 ping > /dev/null 2>&1 && [ -f .demo/redis.pid ]; then
    echo "demo-stop: stopping redis-server $(cat .demo/redis.pid)"
    redis-cli -p 6380 shutdown > /dev/null 2>&1 || true
fi

pidfile=.demo/nginx.pid
pid=$(cat "$pidfile" 2>/dev/null || true)

case $pid in
    ''|*[!0-9]*) [ -n "$quiet" ] || echo "demo-stop: the demo is not running"; exit 0 ;;
esac

if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q nginx; then
    echo "demo-stop: stopping nginx $pid"
    scripts/stop-nginx.sh "$pid" 5
else
    [ -n "$quiet" ] || echo "demo-stop: the demo is not running (stale $pidfile)"
    rm -f "$pidfile"
fi

