/* A Lua script's EVAL command, filled slot by slot (script.h). */

#include "script.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Makes the command EVAL 'text' 'numkeys' with 'argc' arguments in all,
 * every slot after the first three empty until set. Returns 0, or -1 when
 * out of memory (scriptFree() is safe either way). */
int scriptInit(scriptCmd *s, const char *text, const char *numkeys,
               int argc) {
    s->argv = calloc((size_t)argc, sizeof(*s->argv));
    s->lens = calloc((size_t)argc, sizeof(*s->lens));
    s->argc = argc;
    s->overflow = 0;
    if (s->argv == NULL || s->lens == NULL || argc < 3) return -1;
    scriptSet(s, 0, "EVAL");
    scriptSet(s, 1, text);
    scriptSet(s, 2, numkeys);
    return 0;
}

/* Puts 'len' bytes at 'str' in slot 'slot'. */
void scriptSetLen(scriptCmd *s, int slot, const char *str, size_t len) {
    if (slot < 0 || slot >= s->argc) {
        s->overflow = 1;
        return;
    }
    s->argv[slot] = str;
    s->lens[slot] = len;
}

/* Puts the NUL-terminated 'str' in slot 'slot'. */
void scriptSet(scriptCmd *s, int slot, const char *str) {
    scriptSetLen(s, slot, str, strlen(str));
}

/* Returns 0 when every slot is set and none past the end was, else logs
 * the bug and returns -1. */
int scriptCheck(const scriptCmd *s) {
    int i;

    if (s->overflow) {
        logMsg(LOG_ERROR, "a script's command was given more arguments "
               "than its %d: not sent", s->argc);
        return -1;
    }
    for (i = 0; i < s->argc; i++) {
        if (s->argv[i] == NULL) {
            logMsg(LOG_ERROR, "a script's command has no argument %d of "
                   "%d: not sent", i, s->argc);
            return -1;
        }
    }
    return 0;
}

/* Sends the command on 'l' once scriptCheck() passes. Returns
 * linkCommand()'s result, or -1 for a command that is not whole. */
int scriptSend(scriptCmd *s, redisLink *l, linkReplyProc *fn,
               void *privdata) {
    if (scriptCheck(s) != 0) return -1;
    return linkCommand(l, fn, privdata, s->argc, s->argv, s->lens);
}

void scriptFree(scriptCmd *s) {
    free(s->argv);
    free(s->lens);
    s->argv = NULL;
    s->lens = NULL;
}
