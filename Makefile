# ngx_checkout
#
#   make                    build build/ngx_http_checkout_module.so (Debian's nginx-dev tree)
#                           and build/worker/checkout-worker (+ its ASan twin, unit tests)
#   make NGINX_SRC=DIR      the same against another nginx source tree
#   make deps               install missing Debian packages (root), else print the apt-get line
#   make test [T=t/x.t]     deps, build, run the suites (or one file); PROVE_JOBS=1: one at a time
#   make test-valgrind      the same with nginx under valgrind
#   make demo / demo-stop   the demo under .demo/ (nginx on 127.0.0.1:8080)
#   make bench-worker       the worker's deliveries per second (scripts/bench-worker.sh)
#   make clean

SHELL := /bin/bash
.DEFAULT_GOAL := all

MODULE   := ngx_http_checkout_module
BUILD    := build
SO       := $(BUILD)/$(MODULE).so

# The nginx tree the module is compiled in: a copy of Debian's nginx-dev tree,
# or of NGINX_SRC.
ifeq ($(strip $(NGINX_SRC)),)
TREE     := $(BUILD)/nginx-src
else
TREE     := $(BUILD)/nginx-src-custom
endif

NGINX_BIN      ?= /usr/sbin/nginx
NGINX_MODULES  ?= /usr/lib/nginx/modules
ECHO_MODULE    := $(NGINX_MODULES)/ngx_http_echo_module.so

# The suites: t/*.t and below, not the runner (t/lib) nor servroot folders.
T        ?= $(shell find t -name '*.t' -not -path 't/lib/*' -not -path '*servroot*' 2>/dev/null | sort)
PROVE_FLAGS ?=
# Test files in parallel: the runner gives each file its own servroot and
# free ports (9 runs of the suites with -j2 in a row passed). Under valgrind
# one at a time: it needs both cores and the suites measure deadlines.
PROVE_JOBS  ?= 2

.PHONY: all build deps test test-valgrind demo demo-stop bench-worker clean

all: build

# nginx's own Makefile decides what to recompile (a changed .c or .h);
# configure runs once per tree and again when `config` changes. The .so is
# replaced by a rename, never rewritten in place: a running nginx (the demo)
# has it mapped, and its next worker would crash on a file changed under it.
build:
	@scripts/configure-nginx.sh $(TREE) $(NGINX_SRC)
	@$(MAKE) --no-print-directory -C $(TREE) -f $(CURDIR)/scripts/modules.mk modules
	@cmp -s $(TREE)/objs/$(MODULE).so $(SO) || { \
	    cp $(TREE)/objs/$(MODULE).so $(SO).tmp && mv -f $(SO).tmp $(SO) && echo "built $(SO)"; }
	@$(MAKE) --no-print-directory -C worker

deps:
	@scripts/deps.sh

# deps, then the build, then the suites (in that order, also under make -j).
test: deps
	@$(MAKE) --no-print-directory build
	@TEST_NGINX_USE_VALGRIND=$(TEST_NGINX_USE_VALGRIND) \
	 NGINX_BIN=$(NGINX_BIN) MODULES="$(CURDIR)/$(SO) $(ECHO_MODULE)" PROVE_FLAGS="-j$(PROVE_JOBS) $(PROVE_FLAGS)" \
	 scripts/run-tests.sh $(T)

test-valgrind:
	@$(MAKE) --no-print-directory test TEST_NGINX_USE_VALGRIND=1 PROVE_JOBS=1

demo: deps
	@$(MAKE) --no-print-directory build
	@NGINX_BIN=$(NGINX_BIN) scripts/demo.sh

demo-stop:
	@scripts/demo-stop.sh

bench-worker: deps
	@$(MAKE) --no-print-directory build
	@scripts/bench-worker.sh

clean:
	@scripts/demo-stop.sh --quiet || true
	rm -rf $(BUILD) .demo t/servroot*
