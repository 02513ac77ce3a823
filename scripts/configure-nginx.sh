#!/usr/bin/env bash
# Prepares the nginx tree the module is built in (called by `make`):
#
#   scripts/configure-nginx.sh TREE [NGINX_SRC]
#
# Without NGINX_SRC: copies Debian's nginx-dev tree (/usr/share/nginx/src:
# configure, auto/, headers and conf_flags, Debian's recorded NGX_CONF_FLAGS)
# to TREE. With NGINX_SRC: copies that nginx source tree (e.g. a release
# tarball) to TREE instead. Then runs ./configure there, once: again only when
# the module's `config`, this script or the configure arguments changed.
#
# configure arguments: Debian's C and linker flags (those of Debian's own
# build, `nginx -V`), the tree's conf_flags when it has one (Debian's tree
# does), else --with-compat (binary compatibility for dynamic modules), then
# $NGINX_CONFIGURE_ARGS and --add-dynamic-module=<this repository>.
set -euo pipefail

tree=$1
src=${2:-/usr/share/nginx/src}
root=$(cd "$(dirname "$0")/.." && pwd)

# Debian's dpkg-buildflags of its nginx build (see `/usr/sbin/nginx -V`).
# No -Werror here: configure's feature tests use these flags too, and a
# warning in a test program must not turn a feature off. The module's own
# sources get -Wall -Wextra -Werror from scripts/modules.mk.
cc_opt=${NGINX_CC_OPT:--g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2}
ld_opt=${NGINX_LD_OPT:--Wl,-z,relro -Wl,-z,now -fPIC}

if [ ! -x "$src/configure" ] || [ ! -d "$src/auto" ] || [ ! -d "$src/src/core" ]; then
    echo "configure-nginx: $src is not an nginx source tree (configure, auto/, src/)" >&2
    [ "$src" = /usr/share/nginx/src ] && echo "configure-nginx: install nginx-dev (make deps)" >&2
    exit 1
fi
src=$(cd "$src" && pwd)

# 1. the copy (again when the source or its configure changed)
stamp_copy="$src $(stat -c %Y "$src/configure")"
if [ ! -f "$tree/.checkout-copied" ] || [ "$(cat "$tree/.checkout-copied")" != "$stamp_copy" ]; then
    echo "configure-nginx: copying $src to $tree"
    rm -rf "$tree"
    mkdir -p "$tree"
    # not a configured tree's objs/ and Makefile
    (cd "$src" && tar --exclude=./objs --exclude=./Makefile -cf - .) | (cd "$tree" && tar -xf -)
    printf '%s\n' "$stamp_copy" > "$tree/.checkout-copied"
fi

# 2. configure (again when its arguments, `config`, `config.make` or this
#    script changed)
args=(--with-cc-opt="$cc_opt" --with-ld-opt="$ld_opt")
if [ -f "$tree/conf_flags" ]; then
    # shellcheck disable=SC1091
    . "$tree/conf_flags"            # NGX_CONF_FLAGS=( ... ), includes --with-compat
    args+=("${NGX_CONF_FLAGS[@]}")
else
    args+=(--with-compat)
fi
# shellcheck disable=SC2206
args+=(${NGINX_CONFIGURE_ARGS:-} --add-dynamic-module="$root")

stamp_conf=$(printf '%q ' "${args[@]}")
stamp_file="$tree/.checkout-configured"
if [ -f "$stamp_file" ] && [ -f "$tree/objs/Makefile" ] \
   && [ "$(cat "$stamp_file")" = "$stamp_conf" ] \
   && [ "$stamp_file" -nt "$root/config" ] \
   && [ "$stamp_file" -nt "$root/config.make" ] && [ "$stamp_file" -nt "$0" ]
then
    exit 0
fi

echo "configure-nginx: ./configure $stamp_conf"
rm -f "$stamp_file"
# With CFLAGS in the environment nginx's configure would drop its own warning
# flags (-W -Wall -Werror); the C flags go in through --with-cc-opt only.
(cd "$tree" && env -u CFLAGS ./configure "${args[@]}") > "$tree/configure.log" 2>&1 || {
    tail -n 30 "$tree/configure.log" >&2
    echo "configure-nginx: ./configure failed, see $tree/configure.log" >&2
    exit 1
}
printf '%s\n' "$stamp_conf" > "$stamp_file"
echo "configure-nginx: configured (log: $tree/configure.log)"
