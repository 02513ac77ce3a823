#!/usr/bin/env bash
# `make demo-stop`: stops the demo started by `make demo`, in this order:
#
#   checkout-worker (.demo/worker.pid): TERM, which lets its in-flight
#       deliveries finish (shutdown-timeout, 10 s in conf/worker.conf), then
#       KILL if it is still there after WORKER_GRACE seconds (default 15);
#       what it had not acknowledged stays pending in Redis either way
#   nginx (.demo/nginx.pid): QUIT, then TERM and KILL (scripts/stop-nginx.sh)
#   redis-server on 6380 (.demo/redis.pid): SHUTDOWN
#
# The worker goes first, while the receivers and Redis it needs to finish its
# deliveries are still there; Redis goes last, after nginx has stopped
# writing events (what nginx cannot write to Redis it spools anyway).
#
#   scripts/demo-stop.sh [--quiet]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

quiet=
[ "${1:-}" = --quiet ] && quiet=1
grace=${WORKER_GRACE:-15}
stopped=

say() { [ -n "$quiet" ] || echo "demo-stop: $*"; }

alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# is_process PID NAME: PID runs a program whose command line holds NAME
# (a stale pid file may name a pid reused by something else)
is_process() {
    case $1 in ''|*[!0-9]*) return 1 ;; esac
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q -- "$2"
}

# the worker
pidfile=.demo/worker.pid
pid=$(cat "$pidfile" 2>/dev/null || true)
if is_process "$pid" checkout-worker; then
    echo "demo-stop: stopping checkout-worker $pid"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $((grace * 10))); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        echo "demo-stop: checkout-worker $pid still runs after ${grace}s: KILL"
        kill -KILL "$pid" 2>/dev/null
        for _ in $(seq 30); do alive "$pid" || break; sleep 0.1; done
    fi
    stopped=1
elif [ -n "$pid" ]; then
    say "checkout-worker is not running (stale $pidfile)"
fi
rm -f "$pidfile"

# nginx
pidfile=.demo/nginx.pid
pid=$(cat "$pidfile" 2>/dev/null || true)
if is_process "$pid" nginx; then
    echo "demo-stop: stopping nginx $pid"
    scripts/stop-nginx.sh "$pid" 5
    stopped=1
elif [ -n "$pid" ]; then
    say "nginx is not running (stale $pidfile)"
    rm -f "$pidfile"
fi

# Redis
if [ -f .demo/redis.pid ] && redis-cli -p 6380 ping > /dev/null 2>&1; then
    echo "demo-stop: stopping redis-server $(cat .demo/redis.pid)"
    redis-cli -p 6380 shutdown > /dev/null 2>&1 || true
    stopped=1
fi

[ -n "$stopped" ] || say "the demo is not running"
exit 0
