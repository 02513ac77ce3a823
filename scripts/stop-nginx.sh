#!/usr/bin/env bash
# Stops one nginx master process and its workers:
#
#   scripts/stop-nginx.sh PID [GRACE_SECONDS]
#
# QUIT (graceful: finish the requests in flight), then TERM (fast) after
# GRACE_SECONDS (default 5), then KILL for the master and the workers it had
# if they are still there 3 seconds later.
set -uo pipefail

pid=$1
grace=${2:-5}

alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# the master's children (its workers, cache manager...), from /proc
children() {
    local stat
    for stat in /proc/[0-9]*/stat; do
        # pid (comm) state ppid ...: comm may hold spaces, so cut after ')'
        local s
        s=$(cat "$stat" 2>/dev/null) || continue
        s=${s##*) }
        # shellcheck disable=SC2086  # split the fields
        set -- $s
        [ "${2:-}" = "$pid" ] && { local p=${stat#/proc/}; echo "${p%/stat}"; }
    done
}

wait_gone() {   # wait_gone SECONDS PID...
    local t=$(( $1 * 10 )) p any
    shift
    while [ $t -gt 0 ]; do
        any=
        for p in "$@"; do alive "$p" && any=1; done
        [ -z "$any" ] && return 0
        sleep 0.1
        t=$(( t - 1 ))
    done
    return 1
}

alive "$pid" || exit 0
kids=$(children)

kill -QUIT "$pid" 2>/dev/null
# shellcheck disable=SC2086
wait_gone "$grace" "$pid" $kids && exit 0

echo "stop-nginx: nginx $pid still busy after ${grace}s (requests in flight), fast shutdown (TERM)" >&2
kill -TERM "$pid" 2>/dev/null
# shellcheck disable=SC2086
wait_gone 3 "$pid" $kids && exit 0

echo "stop-nginx: $pid still running, sending KILL" >&2
# shellcheck disable=SC2086
kill -KILL "$pid" $kids 2>/dev/null
# shellcheck disable=SC2086
wait_gone 2 "$pid" $kids
