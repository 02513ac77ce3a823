#!/usr/bin/env bash
# Measures checkout-worker's throughput (`make bench-worker`): appends N
# events shaped like the module's to a private redis-server, starts the
# worker with G groups delivering to a private nginx that answers 200 at
# once, and times how long until every group has succeeded with every event.
#
#   scripts/bench-worker.sh [EVENTS [GROUPS [CONCURRENCY]]]   (20000 1 64)
#
# What it measures is the worker's own cost per delivery: the XREADGROUP,
# the begin and finish scripts (two EVALs) and an HTTP POST on a kept-alive
# connection, all on one thread. Ports 6488 (redis), 6487 (admin) and 8556
# (nginx) must be free.
#
# env: CHECKOUT_WORKER (the binary, default build/worker/checkout-worker),
# NGINX_BIN, BENCH_START_BOUND (seconds each process may take to answer,
# default 30), BENCH_STALL_BOUND (seconds without a delivery before it gives
# up, default 60).
# Whatever it started (nginx, redis-server, the worker) is stopped when it
# ends: done, failed or interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-20000}
groups=${2:-1}
concurrency=${3:-64}
worker=${CHECKOUT_WORKER:-build/worker/checkout-worker}
nginx=${NGINX_BIN:-/usr/sbin/nginx}
start_bound=${BENCH_START_BOUND:-30}
stall_bound=${BENCH_STALL_BOUND:-60}
[ -x "$worker" ] || { echo "bench-worker: build it first (make)" >&2; exit 1; }

fail() { echo "bench-worker: $*" >&2; exit 1; }

# The last lines of the logs whose names start with $dir/logs/$1.
show_logs() {
    local f
    for f in "$dir/logs/$1"*; do
        [ -s "$f" ] && { echo "--- $f:"; tail -n 15 "$f"; } >&2
    done
    return 0
}

for port in 6488 6487 8556; do
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
        fail "port $port is in use (see: ss -ltnp 'sport = $port')"
done

dir=$(mktemp -d /tmp/checkout-bench.XXXXXX)
nginx_pid='' redis_pid='' worker_pid=''

# Each process runs undaemonized, as a child of this script, so its pid
# is known from the start, and no one else's server is touched.
stop() {   # stop PID SECONDS: TERM, KILL after SECONDS
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < $2 * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
cleanup() {
    set +e
    [ -n "$worker_pid" ] && stop "$worker_pid" 10
    [ -n "$nginx_pid" ] && scripts/stop-nginx.sh "$nginx_pid" 2 >/dev/null
    [ -n "$redis_pid" ] && stop "$redis_pid" 5
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# wait_for WHAT PID LOGS COMMAND...: until COMMAND succeeds; fails, with
# the LOGS (see show_logs), when PID has exited or $start_bound seconds
# have passed first.
wait_for() {
    local what=$1 pid=$2 logs=$3 i
    shift 3
    for ((i = 0; i < start_bound * 20; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            show_logs "$logs"
            fail "$what exited at start"
        fi
        sleep 0.05
    done
    show_logs "$logs"
    fail "$what did not answer within $start_bound s"
}

mkdir -p "$dir/logs"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $dir/logs/error.log;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:8556;
        keepalive_requests 1000000;
        location / { return 200 '{}'; }
    }
}
CONF
"$nginx" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" &
nginx_pid=$!
wait_for nginx "$nginx_pid" error bash -c 'exec 3<>/dev/tcp/127.0.0.1/8556'

redis-server --port 6488 --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$dir" --logfile "$dir/logs/redis.log" &
redis_pid=$!
wait_for redis-server "$redis_pid" redis redis-cli -p 6488 ping

{
    echo "redis 127.0.0.1:6488"
    echo "admin 127.0.0.1:6487"
    echo "log $dir/logs/worker.log"
    for g in $(seq 1 "$groups"); do
        echo "group g$g"
        echo "    url http://127.0.0.1:8556/g$g"
        echo "    concurrency $concurrency"
    done
} > "$dir/worker.conf"

# the events, as the module writes them (t/lib/CheckoutWorker.pm), piped in
perl -I t/lib -MCheckoutWorker -e 'CheckoutWorker::print_events(@ARGV)' \
    "$events" | redis-cli -p 6488 --pipe >/dev/null

start=$(date +%s%N)
"$worker" -c "$dir/worker.conf" 2> "$dir/logs/worker.stderr" &
worker_pid=$!
wait_for checkout-worker "$worker_pid" worker redis-cli -p 6487 ping

# Deliveries so far, summed over the groups' succeeded= fields; fails
# when the admin port does not answer.
succeeded() {
    local info
    info=$(redis-cli -p 6487 info groups 2>/dev/null) || return 1
    awk -F'succeeded=' 'NF > 1 { s += $2 + 0 } END { print s + 0 }' <<< "$info"
}
want=$((events * groups))
last=-1
last_change=$(date +%s)
while :; do
    done_=$(succeeded) || done_=
    [ -n "$done_" ] && [ "$done_" -ge "$want" ] && break
    if ! kill -0 "$worker_pid" 2>/dev/null; then
        show_logs worker
        fail "the worker died"
    fi

    now=$(date +%s)
    if [ "${done_:--1}" != "$last" ]; then
        last=${done_:--1}
        last_change=$now
    elif [ $((now - last_change)) -ge "$stall_bound" ]; then
        show_logs worker
        fail "no progress for $stall_bound s (${done_:-no answer} of $want)"
    fi
    sleep 0.05
done
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
echo "bench-worker: $events events x $groups groups (concurrency $concurrency):" \
     "$want deliveries in $ms ms, $(( want * 1000 / (ms > 0 ? ms : 1) )) deliveries/s" \
     "(worker start included)"
