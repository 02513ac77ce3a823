#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the tests and the demo need
# (`make deps`). Only what is missing is installed; when nothing is missing
# this is one dpkg-query call: fast and offline.
#
# As root it runs `apt-get update` once and `apt-get install`; as another user
# it prints the apt-get line to run and fails.
set -euo pipefail

packages=(
    # build: compiler, and Debian's nginx headers + recorded configure flags
    # (nginx-dev pulls the stock nginx and the -dev packages its configure
    # flags need; they are listed too, as configure fails without them)
    gcc make libc6-dev
    nginx-dev libpcre2-dev zlib1g-dev libssl-dev
    # libraries of the module, and the Redis its tests and demo start
    libyajl-dev libhiredis-dev redis-server
    # the worker: its event loop and HTTP client
    libevent-dev libcurl4-openssl-dev
    # the worker's unit tests (Check)
    check pkg-config
    # the stock /usr/sbin/nginx 1.22.1 (package "nginx" in Debian 12;
    # "nginx-core" is only a meta package that adds six dynamic modules)
    nginx
    # test backends (echo) and the demo's mock services (njs 0.7.9)
    libnginx-mod-http-echo libnginx-mod-http-js
    # the test runner (t/lib): prove, Test::Base & co
    perl libtest-base-perl libtest-longstring-perl libtext-diff-perl liburi-perl
    # demo client, memory checks
    curl valgrind
)

missing=()
while read -r name status; do
    [ "$status" = installed ] || missing+=("$name")
done < <(
    for p in "${packages[@]}"; do
        # one line per package: "NAME STATUS" (STATUS empty when unknown)
        s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        printf '%s %s\n' "$p" "$s"
    done
)

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#packages[@]} packages are installed"
    exit 0
fi

install=(apt-get install -y --no-install-recommends
         -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold
         "${missing[@]}")

if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages: ${missing[*]}" >&2
    echo "deps: run as root:" >&2
    echo "    apt-get update && DEBIAN_FRONTEND=noninteractive ${install[*]}" >&2
    exit 1
fi

echo "deps: installing ${missing[*]}"

# Installing nginx and redis-server would start the system services (nginx on
# port 80 with /etc/nginx, redis on 6379) through invoke-rc.d. Nothing here
# uses them: the tests and the demo run their own nginx and redis with their
# own configuration and ports. So, like Docker images do, deny service starts
# with a policy-rc.d for the duration of the install (invoke-rc.d and
# deb-systemd-invoke honour it; the postinst scripts then succeed without
# starting anything). An existing policy-rc.d is left as it is. A system nginx
# or redis that was already running before is not ours and is not touched.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# added by ngx_checkout make deps during apt-get install\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
"${install[@]}"

still=()
for p in "${missing[@]}"; do
    s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$s" = installed ] || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
    echo "deps: still missing after apt-get install: ${still[*]}" >&2
    exit 1
fi
echo "deps: done"
