#!/usr/bin/env bash
# The demo's sample checkouts (run by `make demo`; can be run again alone):
#
#   scripts/demo-checkouts.sh [URL]      (default http://127.0.0.1:8080/checkout)
#
# One checkout per payment test token plus an out-of-stock cart. Each prints
# the request, the reply's status line, its relevant headers, its body and how
# long it took. To add a sample, add a `sample` line at the end.
#
# With DEMO_IDS=FILE, a line "TITLE<tab>checkoutId<tab>status" is appended to
# FILE for each sample that got a checkout id (scripts/demo.sh looks them up
# later).
set -uo pipefail

url=${1:-http://127.0.0.1:8080/checkout}
ids=${DEMO_IDS:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# cart TOKEN [SKU]: the sample cart, paid with TOKEN, its first item SKU
cart() {
    printf '{"customerId":"cus_1","currency":"EUR","items":[{"sku":"%s","quantity":2,"unitPrice":1250},{"sku":"pen-3","quantity":1,"unitPrice":199}],"payment":{"method":"card","token":"%s"}}' \
        "${2:-book-1}" "$1"
}

# sample TITLE EXPECTED BODY [CURL ARGS...]
sample() {
    local title=$1 expected=$2 body=$3 time
    shift 3

    echo "== $title (expected: $expected)"
    echo "   > POST $url"
    echo "   > $body"

    if ! time=$(curl -sS -m 15 -o "$tmp/body" -D "$tmp/headers" -w '%{time_total}' \
                     -H 'Content-Type: application/json' \
                     -H "Idempotency-Key: demo-$(date +%s%N)-$RANDOM" \
                     "$@" --data-binary "$body" "$url")
    then
        echo "   ! curl failed"
        echo
        return
    fi

    tr -d '\r' < "$tmp/headers" | awk '
        NR == 1 { print "   < " $0; next }
        tolower($0) ~ /^(content-type|location|retry-after|server-timing|idempotent-replayed):/ { print "   < " $0 }'
    echo "   < $(cat "$tmp/body")"
    echo "   ($time s)"
    echo

    if [ -n "$ids" ]; then
        local id status
        id=$(grep -o '"checkoutId":"[^"]*"' "$tmp/body" | head -n 1 | cut -d'"' -f4)
        status=$(grep -o '"status":"[^"]*"' "$tmp/body" | head -n 1 | cut -d'"' -f4)
        [ -z "$id" ] || printf '%s\t%s\t%s\n' "$title" "$id" "${status:--}" >> "$ids"
    fi
}

sample "card authorized"        "201 confirmed"        "$(cart tok_visa)"
sample "card declined"          "402 declined"         "$(cart tok_decline)"
sample "3-D Secure"             "202 requires_action"  "$(cart tok_3ds)"
sample "payment provider slow"  "202 pending_review after the 1.2 s authorize deadline" "$(cart tok_timeout)"
sample "payment provider down"  "503 failed, retryable" "$(cart tok_error)"
sample "item out of stock"      "409 declined by the cart" "$(cart tok_visa sku_out_of_stock)"
