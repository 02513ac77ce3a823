/* checkout-worker: the arguments, the config check, and the process around
 * the running worker (worker.c).
 *
 *   checkout-worker -c FILE        run
 *   checkout-worker -t -c FILE     check FILE and say what is wrong
 *   checkout-worker -v             version */

#define _XOPEN_SOURCE 700   /* srandom() */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "log.h"
#include "util.h"
#include "worker.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: checkout-worker -c FILE      run with the config FILE\n"
            "       checkout-worker -t -c FILE   check the config FILE\n"
            "       checkout-worker -v           print the version\n");
}

/* Runs the worker of 'cfg', read from 'file', inside the log's life.
 * Returns the exit status. */
static int run(const char *file, workerConfig *cfg) {
    char err[512];
    worker w;
    int rc;

    if (logOpen(cfg->log, err, sizeof(err)) != 0) {
        fprintf(stderr, "checkout-worker: %s\n", err);
        configFree(cfg);
        return 1;
    }
    srandom((unsigned)(nowMs() ^ (long long)getpid() << 16));
    signal(SIGPIPE, SIG_IGN);
    if (workerInit(&w, file, cfg, workerCommands) != 0) {
        workerFree(&w);
        logClose();
        return 1;
    }
    rc = workerRun(&w);
    workerFree(&w);
    logClose();
    return rc;
}

int main(int argc, char **argv) {
    const char *file = NULL;
    workerConfig *cfg = NULL;
    char err[1024];
    int opt, test = 0;

    while ((opt = getopt(argc, argv, "c:tvh")) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'v':
            printf("checkout-worker %s\n", WORKER_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (file == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (configLoad(file, &cfg, err, sizeof(err)) != CONFIG_OK) {
        fprintf(stderr, "checkout-worker: %s\n", err);
        return 1;
    }
    if (test) {
        printf("checkout-worker: %s: syntax is ok\n", file);
        configFree(cfg);
        return 0;
    }
    return run(file, cfg);
}
