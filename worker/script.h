/* A Lua script's EVAL command, filled slot by slot. Each script is a file
 * of lua/ that ../contract/lua2c.awk turns into a header at build time:
 * SCRIPT_<NAME>_LUA (the text), SCRIPT_<NAME>_NUMKEYS, one index per slot
 * the script names, and SCRIPT_<NAME>_ARGC, the command's length up to the
 * open-ended rest of a script that has one (ids, fields, emits).
 *
 * A command is sent only whole: a slot left empty or one set past the
 * command's end is a bug, logged and refused, never a shorter command.
 *
 * Ownership: a command points at what its slots were set to, without
 * copies; that must live until scriptSend() returns (hiredis formats the
 * command at once). scriptFree() frees the command's own vectors. */

#ifndef CHECKOUT_WORKER_SCRIPT_H
#define CHECKOUT_WORKER_SCRIPT_H

#include <stddef.h>

#include "redis.h"

typedef struct scriptCmd {
    const char **argv;
    size_t *lens;
    int argc;
    int overflow;               /* a slot past argc was set */
} scriptCmd;

int scriptInit(scriptCmd *s, const char *text, const char *numkeys,
               int argc);
void scriptSet(scriptCmd *s, int slot, const char *str);
void scriptSetLen(scriptCmd *s, int slot, const char *str, size_t len);
int scriptCheck(const scriptCmd *s);
int scriptSend(scriptCmd *s, redisLink *l, linkReplyProc *fn,
               void *privdata);
void scriptFree(scriptCmd *s);

#endif
