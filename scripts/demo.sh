#!/usr/bin/env bash
# `make demo`: (re)starts the demo under .demo/ and runs the sample checkouts.
#
#   redis-server on 127.0.0.1:6380, data in .demo/redis
#   nginx (Debian's /usr/sbin/nginx) with conf/demo/nginx.conf:
#     127.0.0.1:8080 the checkout, 127.0.0.1:8091-8093 the mock services
#
# The build must exist (make demo builds it first). Leaves nginx running;
# `make demo-stop` stops it. A demo still running is stopped first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# (not $NGINX: nginx reads that variable as inherited sockets and then stays
# in the foreground)
unset NGINX
nginx=${NGINX_BIN:-/usr/sbin/nginx}
conf=conf/demo/nginx.conf
demo=.demo
url=http://127.0.0.1:8080/checkout

[ -f build/ngx_http_checkout_module.so ] || { echo "demo: build the module first (make)" >&2; exit 1; }

scripts/demo-stop.sh --quiet

# a fresh run: fresh logs and a fresh Redis
rm -rf "$demo/logs" "$demo/redis"
mkdir -p "$demo/logs" "$demo/tmp" "$demo/redis" "$demo/spool"

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

echo "demo: nginx $(cat "$demo/nginx.pid") is running: checkout on $url, mock cart/payments/orders on 127.0.0.1:8091/8092/8093, redis on 127.0.0.1:6380"
echo

scripts/demo-checkouts.sh "$url"

echo "== the event stream (redis-cli -p 6380 XRANGE checkout:events - +), one line an entry:"
redis-cli -p 6380 --raw XRANGE checkout:events - + | awk '
    /^[0-9]+-[0-9]+$/ { if (line) print "   " line; line = $0; next }
    prev == "ce_type" || prev == "ce_id" { line = line "  " prev "=" $0 }
    { prev = $0 }
    END { if (line) print "   " line }'
echo

echo "== the status of each checkout (GET $url/<checkoutId>):"
for id in $(redis-cli -p 6380 --raw XRANGE checkout:events - + | grep -A1 '^ce_id$' | grep '^chk_'); do
    echo "   $(curl -s "$url/$id")"
done
echo

cat << END
== the access log (\$checkout_id \$checkout_outcome \$checkout_step_timings):
$(grep "POST /checkout" "$demo/logs/access.log" | tail -n 6 | sed 's/^/   /')

The demo is still running. Try it:
   curl -i -H 'Content-Type: application/json' --data-binary @- $url <<< '{"customerId":"cus_1","currency":"EUR","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],"payment":{"method":"card","token":"tok_visa"}}'
Logs:  $root/$demo/logs/access.log (checkouts), error.log, services.log (mock services), redis.log
Redis: redis-cli -p 6380 XRANGE checkout:events - +
Stop:  make demo-stop
END
