#!/usr/bin/env bash
# `make demo`: (re)starts the demo under .demo/ and runs the sample checkouts.
#
#   redis-server on 127.0.0.1:6380, data in .demo/redis
#   nginx (Debian's /usr/sbin/nginx) with conf/demo/nginx.conf:
#     127.0.0.1:8080 the checkout, 127.0.0.1:8091-8093 the mock services,
#     127.0.0.1:8094 the follow-up services the worker delivers to
#   checkout-worker with conf/worker.conf, admin port 127.0.0.1:6381
#
# Then it runs the sample checkouts, waits (at most DEMO_WAIT seconds,
# default 30) until the worker has handled their events, and prints what
# happened. The build must exist (make demo builds it first). Leaves
# everything running; `make demo-stop` stops it. A demo still running is
# stopped first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# (not $NGINX: nginx reads that variable as inherited sockets and then stays
# in the foreground)
unset NGINX
nginx=${NGINX_BIN:-/usr/sbin/nginx}
conf=conf/demo/nginx.conf
worker=build/worker/checkout-worker
worker_conf=conf/worker.conf
demo=.demo
# the streams the demo's worker reads and dead-letters to, as it is told
stream=$(awk '$1 == "stream" { print $2; exit }' "$worker_conf")
dlq=$(awk '$1 == "dead-letter-stream" { print $2; exit }' "$worker_conf")
[ -n "$stream" ] && [ -n "$dlq" ] || {
    echo "demo: $worker_conf names no stream or dead-letter-stream" >&2; exit 1; }
url=http://127.0.0.1:8080/checkout
wait_max=${DEMO_WAIT:-30}

[ -f build/ngx_http_checkout_module.so ] || { echo "demo: build the module first (make)" >&2; exit 1; }
[ -x "$worker" ] || { echo "demo: $worker is missing: build the worker first (make -C worker)" >&2; exit 1; }
"$worker" -t -c "$worker_conf" > /dev/null || { echo "demo: $worker_conf is not valid (above)" >&2; exit 1; }

scripts/demo-stop.sh --quiet

if redis-cli -p 6381 ping > /dev/null 2>&1; then
    echo "demo: something already answers on 127.0.0.1:6381, the worker's admin port" >&2
    exit 1
fi

# a fresh run: fresh logs and a fresh Redis
rm -rf "$demo/logs" "$demo/redis"
mkdir -p "$demo/logs" "$demo/tmp" "$demo/redis" "$demo/spool"
# the spool is written by nginx's worker processes: as root, they run as
# nobody (nginx's default user), and the spool must be theirs alone
if [ "$(id -u)" = 0 ]; then
    chown nobody "$demo/spool"
    chmod 700 "$demo/spool"
fi

redis-server --bind 127.0.0.1 --port 6380 --daemonize yes \
    --dir "$root/$demo/redis" --pidfile "$root/$demo/redis.pid" \
    --logfile "$root/$demo/logs/redis.log" --save '' --appendonly yes
for _ in $(seq 50); do
    redis-cli -p 6380 ping > /dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p 6380 ping > /dev/null || { echo "demo: redis-server does not answer on 6380" >&2; exit 1; }

# -p: relative paths in the configuration are relative to the repository
"$nginx" -q -t -p "$root/" -c "$conf"
# (nginx daemonizes: the command returns once the master runs)
timeout 10 "$nginx" -p "$root/" -c "$conf"

# wait until it answers (any HTTP status)
for _ in $(seq 50); do
    curl -s -o /dev/null -m 1 "$url" && break
    sleep 0.1
done
curl -s -o /dev/null -m 1 "$url" || { echo "demo: nginx does not answer on $url" >&2; tail -n 20 "$demo/logs/error.log" >&2; exit 1; }

# The worker does not daemonize itself: it runs in the background in a
# session of its own (no terminal signals reach it), from the repository root
# (conf/worker.conf's relative paths), its stdout and stderr appended to its
# log. setsid execs the worker (a background job of a script is no process
# group leader), so $! is the worker's pid.
setsid "$worker" -c "$worker_conf" >> "$demo/logs/worker.log" 2>&1 < /dev/null &
worker_pid=$!
echo "$worker_pid" > "$demo/worker.pid"

worker_alive() { kill -0 "$worker_pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$worker_pid/status" 2>/dev/null; }

for _ in $(seq 100); do
    redis-cli -p 6381 ping 2>/dev/null | grep -q PONG && break
    worker_alive || break
    sleep 0.1
done
if ! redis-cli -p 6381 ping 2>/dev/null | grep -q PONG; then
    if worker_alive; then
        echo "demo: checkout-worker $worker_pid does not answer PING on 127.0.0.1:6381 after 10 s" >&2
    else
        echo "demo: checkout-worker exited at start" >&2
    fi
    echo "demo: the end of $demo/logs/worker.log:" >&2
    tail -n 20 "$demo/logs/worker.log" >&2
    exit 1
fi

echo "demo: nginx $(cat "$demo/nginx.pid") is running: checkout on $url, mock cart/payments/orders on 127.0.0.1:8091/8092/8093, follow-up services on 127.0.0.1:8094"
echo "demo: redis-server on 127.0.0.1:6380; checkout-worker $worker_pid with admin port 127.0.0.1:6381"
echo

ids=$demo/checkouts.tsv
rm -f "$ids"
DEMO_IDS=$ids scripts/demo-checkouts.sh "$url"

status_of() { curl -s -m 2 "$url/$1" || true; }

# the checkout the worker's review group reconciles
review_id=$(awk -F'\t' '$3 == "pending_review" { print $2; exit }' "$ids")
[ -n "$review_id" ] || echo "demo: no sample checkout is pending_review: nothing for the review group" >&2

# Done when the review group has confirmed the slow checkout and every group
# has nothing left: no entry in flight, waiting for its turn or its retry,
# pending or unread (INFO's lines: group_NAME:...,in_flight=0,...,lag=0).
settled() {
    local info st
    if [ -n "$review_id" ]; then
        st=$(status_of "$review_id")
        grep -q '"status":"confirmed"' <<< "$st" || return 1
    fi
    info=$(redis-cli -p 6381 INFO 2>/dev/null | tr -d '\r') || return 1
    grep -q '^group_' <<< "$info" || return 1
    ! grep '^group_' <<< "$info" | grep -Eq '(in_flight|waiting|retrying|pending|lag)=([1-9]|-)'
}

echo "== waiting (at most ${wait_max} s) for the worker to handle the events..."
now_ms() { date +%s%3N; }
start=$(now_ms)
done_in=
while [ $(($(now_ms) - start)) -lt $((wait_max * 1000)) ]; do
    worker_alive || { echo "demo: checkout-worker $worker_pid has exited; the end of its log:" >&2; tail -n 20 "$demo/logs/worker.log" >&2; exit 1; }
    if settled; then
        done_in=$(($(now_ms) - start))
        break
    fi
    sleep 0.5
done
if [ -n "$done_in" ]; then
    echo "   done ${done_in} ms after the last checkout"
else
    echo "   not done after ${wait_max} s: what follows is where it stands"
fi
echo

echo "== the event stream (redis-cli -p 6380 XRANGE $stream - +), one line an entry:"
redis-cli -p 6380 --raw XRANGE "$stream" - + | awk '
    /^[0-9]+-[0-9]+$/ { if (line) print "   " line; line = $0; next }
    prev == "ce_type" || prev == "ce_id" || prev == "ce_source" { line = line "  " prev "=" $0 }
    { prev = $0 }
    END { if (line) print "   " line }'
echo

# (logfmt: a value is a word or a "quoted string" with backslash escapes)
skipped=$(grep -c ' result=skipped' "$demo/logs/worker.log" || true)
echo "== the worker's outcomes ($demo/logs/worker.log, some of the fields; ${skipped:-0} skipped ones left out: types a group does not handle):"
{ grep ' result=' "$demo/logs/worker.log" | grep -v ' result=skipped' || true; } | awk '
    {
        s = $0; out = ""
        while (match(s, /[a-z_]+=("([^"\\]|\\.)*"|[^ ]*)/)) {
            kv = substr(s, RSTART, RLENGTH)
            s = substr(s, RSTART + RLENGTH)
            k = kv; sub(/=.*/, "", k)
            if (k == "ts")
                out = out " " substr(kv, 15, 12)
            else if (k ~ /^(group|ce_id|ce_type|attempt|result|status|next_ms|error)$/)
                out = out " " kv
        }
        print "  " out
    }'
echo

echo "== redis-cli -p 6381 INFO (the worker's admin port):"
redis-cli -p 6381 INFO | tr -d '\r' | sed 's/^/   /'
echo

dead=$(redis-cli -p 6380 XLEN "$dlq")
echo "== dead letters (XLEN $dlq): $dead"
if [ "${dead:-0}" != 0 ]; then
    redis-cli -p 6381 DLQ | sed 's/^/   /'
fi
echo

echo "== each sample checkout: its reply's status, and its status now (GET $url/<checkoutId>):"
while IFS=$'\t' read -r title id replied; do
    printf '   %-22s %-16s now %s\n' "$title:" "$replied," "$(status_of "$id")"
done < "$ids"
echo

cat << END
== the access log (\$checkout_id \$checkout_outcome \$checkout_step_timings):
$(grep "POST /checkout" "$demo/logs/access.log" | tail -n 6 | sed 's/^/   /')

The demo is still running. Try it:
   curl -i -H 'Content-Type: application/json' --data-binary @- $url <<< '{"customerId":"cus_1","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_timeout"}}'
   curl -s $url/<checkoutId>     (a moment later: confirmed by the review group)
   redis-cli -p 6381 INFO groups; redis-cli -p 6381 PENDING fulfillment; redis-cli -p 6381 DLQ; redis-cli -p 6381 PAUSE review (RESUME review)
Logs:  $root/$demo/logs/access.log (checkouts), error.log, services.log (mock services),
       receivers.log (the worker's deliveries), worker.log, redis.log
Redis: redis-cli -p 6380 XRANGE $stream - +
Stop:  make demo-stop
END
