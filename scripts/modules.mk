# Wrapper around nginx's objs/Makefile, run in the configured tree:
#     make -C TREE -f scripts/modules.mk modules
# It builds only the dynamic module(s) and compiles them with
# -Wall -Wextra -Werror on top of nginx's own CFLAGS (for gcc these are already
# "-W -Wall -Wpointer-arith -Wno-unused-parameter -Werror"; -W is the old name
# of -Wextra, and gcc keeps the explicit -Wno-unused-parameter whatever the
# order). Only the `modules` target is built, so these flags reach the
# module's sources and its generated *_modules.c, never nginx's own sources.

include objs/Makefile

CFLAGS += $(CHECKOUT_WARN_CFLAGS)
CHECKOUT_WARN_CFLAGS ?= -Wall -Wextra -Werror
