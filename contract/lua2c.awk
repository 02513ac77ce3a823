# Turns a Redis Lua script into a C header, at build time:
#
#   awk -v prefix=NAME -f contract/lua2c.awk [PRELUDE.lua ...] SCRIPT.lua
#
# The script's opening comment names its slots, one a line, in order:
#
#   -- KEYS[1] stream       what it is
#   -- ARGV[1] group        what it is
#   -- ARGV[5..] first_id   where the open-ended rest starts (last only)
#
# The script uses the names, never KEYS[n] or ARGV[n]: the first line of
# the text sent is "local stream = KEYS[1] ..." (the script's own first
# line, a comment, gives way to it, so line numbers in Redis's errors are
# the file's), and "local first_id = 5" for the open-ended rest.  Preludes
# (shared functions, no KEYS or ARGV) come right after that line.
#
# The header gets, for the command EVAL <script> <numkeys> KEYS ARGV:
#
#   NAME_LUA        the text, comments blanked and indentation dropped
#   NAME_NUMKEYS    the number of keys, as the command's string argument
#   NAME_<SLOT>     each slot's index in the command's argument vector
#   NAME_ARGC       the vector's length up to the open-ended rest
#
# A slot named twice, a number skipped, a name Lua already has, or a
# script that indexes KEYS or ARGV by number is refused.

function fail(msg) {
    printf "lua2c: %s:%d: %s\n", FILENAME, FNR, msg > "/dev/stderr"
    failed = 1
    exit 1
}

function declare(kind, n, open, name) {
    if (name in slot || name in lua)
        fail("slot name \"" name "\" is taken")
    if (n != count[kind] + 1)
        fail(kind "[" n "] follows " kind "[" count[kind] "]")
    if (rest != "")
        fail(kind "[" n "] follows the open-ended " rest)
    if (open && kind != "ARGV")
        fail("only the last ARGV may be open-ended")
    count[kind] = n
    slot[name] = kind
    number[name] = n
    order[++nslots] = name
    if (open)
        rest = name
}

# the C string literal's body for s (gsub's replacement rules differ
# between awks on backslashes: one character at a time)
function escape(s,    out, c, i) {
    out = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\" || c == "\"")
            out = out "\\"
        out = out c
    }
    return out
}

BEGIN {
    if (prefix !~ /^[A-Za-z_][A-Za-z0-9_]*$/) {
        print "lua2c: -v prefix=NAME is required" > "/dev/stderr"
        failed = 1
        exit 1
    }
    script = ARGV[ARGC - 1]
    count["KEYS"] = 0
    count["ARGV"] = 0
    split("KEYS ARGV redis unpack type tonumber tostring ipairs pairs " \
          "string table math next select error assert cjson bit struct " \
          "cmsgpack", names, " ")
    for (i in names)
        lua[names[i]] = 1
}

FILENAME == script && FNR == 1 && $0 !~ /^--/ {
    fail("the first line must be a comment (the slots' line replaces it)")
}

/^[ \t]*--/ {
    if (FILENAME == script \
        && match($0, /^-- (KEYS|ARGV)\[[0-9]+(\.\.)?\] +[a-z_][a-z0-9_]*/))
    {
        decl = substr($0, 4, RLENGTH - 3)
        kind = substr(decl, 1, 4)
        n = substr(decl, 6)
        open = (n ~ /^[0-9]+\.\./)
        sub(/[^0-9].*/, "", n)
        name = decl
        sub(/^[^ ]+ +/, "", name)
        declare(kind, n + 0, open, name)
    }
    if (FILENAME == script)
        body[FNR] = ""
    else
        prelude = prelude "\n"
    next
}

{
    line = $0
    sub(/^[ \t]+/, "", line)
    sub(/[ \t]+$/, "", line)
    if (line ~ /(KEYS|ARGV)\[[ \t]*[0-9]/)
        fail("KEYS and ARGV are used by name (the slots' names)")
    if (FILENAME != script && line ~ /(KEYS|ARGV)/)
        fail("a prelude uses KEYS or ARGV")
    if (FILENAME == script)
        body[FNR] = line
    else
        prelude = prelude line "\n"
}

END {
    if (failed)
        exit 1

    # line 1: each slot bound to its name
    first = ""
    for (i = 1; i <= nslots; i++) {
        name = order[i]
        if (name == rest)
            value = number[name]
        else
            value = slot[name] "[" number[name] "]"
        first = first (i > 1 ? " " : "") "local " name " = " value
    }

    guard = prefix "_LUA_H"
    printf "/* generated from %s by contract/lua2c.awk: edit that file */\n",
           script
    printf "\n#ifndef %s\n#define %s\n\n\n", guard, guard

    printf "#define %s_NUMKEYS  \"%d\"\n", prefix, count["KEYS"]
    for (i = 1; i <= nslots; i++) {
        name = order[i]
        at = 2 + number[name]
        if (slot[name] == "ARGV")
            at += count["KEYS"]
        printf "#define %s_%s  %d\n", prefix, toupper(name), at
    }
    argc = 3 + count["KEYS"] + count["ARGV"]
    if (rest != "")
        argc--
    printf "#define %s_ARGC  %d\n\n", prefix, argc

    printf "#define %s_LUA \\\n", prefix
    printf "    \"%s\\n\"", escape(first)
    n = split(prelude, lines, "\n")
    for (i = 1; i < n; i++)
        printf " \\\n    \"%s\\n\"", escape(lines[i])
    for (i = 2; i in body; i++)
        printf " \\\n    \"%s\\n\"", escape(body[i])
    printf "\n\n\n#endif\n"
}
