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
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-20000}
groups=${2:-1}
concurrency=${3:-64}
worker=build/worker/checkout-worker
[ -x "$worker" ] || { echo "bench-worker: build it first (make)" >&2; exit 1; }

dir=$(mktemp -d /tmp/checkout-bench.XXXXXX)
cleanup() {
    [ -n "${wpid:-}" ] && kill "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null
    [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null
    redis-cli -p 6488 shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

mkdir -p "$dir/logs"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
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
"${NGINX_BIN:-/usr/sbin/nginx}" -p "$dir" -c "$dir/nginx.conf"
redis-server --port 6488 --save '' --appendonly no --daemonize yes \
    --dir "$dir" --logfile "$dir/logs/redis.log"
until redis-cli -p 6488 ping >/dev/null 2>&1; do sleep 0.05; done

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

# the events, pipelined through redis-cli
for i in $(seq 1 "$events"); do
    printf 'XADD checkout:events * ce_specversion 1.0 ce_id chk_%d ce_type OrderConfirmed ce_source /checkout ce_time 2026-11-26T21:00:00Z ce_subject chk_%d ce_schemaversion 1 content-type application/json data "{\\"checkoutId\\":\\"chk_%d\\",\\"status\\":\\"confirmed\\"}"\n' "$i" "$i" "$i"
done | redis-cli -p 6488 >/dev/null

start=$(date +%s%N)
"$worker" -c "$dir/worker.conf" &
wpid=$!
want=$((events * groups))
while :; do
    done_=$(redis-cli -p 6487 info groups 2>/dev/null \
            | grep -o 'succeeded=[0-9]*' | awk -F= '{ s += $2 } END { print s + 0 }')
    [ "$done_" -ge "$want" ] && break
    kill -0 "$wpid" 2>/dev/null || { echo "bench-worker: the worker died" >&2; exit 1; }
    sleep 0.05
done
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
echo "bench-worker: $events events x $groups groups (concurrency $concurrency):" \
     "$want deliveries in $ms ms, $(( want * 1000 / (ms > 0 ? ms : 1) )) deliveries/s" \
     "(worker start included)"
