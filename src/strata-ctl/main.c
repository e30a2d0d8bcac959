/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl - human command line over stratad's QMP socket. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata-ctl/ctl.h"

#define DEFAULT_SOCKET "/run/strata/qmp.sock"
/* Greeting and negotiation: a live daemon answers at once. */
#define CONNECT_TIMEOUT_MS 10000

typedef struct Subcommand {
    const char *name;
    int (*fn)(const CtlOptions *o, int argc, char **argv);
    const char *summary;
} Subcommand;

static const Subcommand subcommands[] = {
    { "qmp", cmd_qmp, "run one QMP command, print the raw reply" },
    { "nodes", cmd_nodes, "list block nodes" },
    { "exports", cmd_exports, "list block exports" },
    { "events", cmd_events, "print QMP events as they arrive" },
    { "threshold", cmd_threshold, "arm a node's write threshold (size or %)" },
    { "alloc", cmd_alloc, "allocation, physical size and threshold per node" },
    { "stats", cmd_stats, "I/O rates and latency per export and node" },
    { "stream", cmd_stream, "start a block-stream job into a node" },
    { "jobs", cmd_jobs, "list block jobs, or watch their progress" },
    { "job", cmd_job, "pause, resume, cancel or re-rate a job" },
    { "params", cmd_params, "show or change a node's image parameters" },
};

static void usage(FILE *f)
{
    fprintf(f,
"Usage: strata-ctl [-s SOCKET] [--json] COMMAND [ARGS...]\n"
"\n"
"Talks to stratad over its QMP socket.\n"
"\n"
"Options:\n"
"  -s, --socket SOCKET  stratad's QMP socket (default: $STRATA_SOCKET,\n"
"                       else " DEFAULT_SOCKET ")\n"
"  -j, --json           machine-readable output\n"
"  -h, --help           this help; COMMAND --help for a command's\n"
"  -V, --version        print the version\n"
"\n"
"Commands:\n");
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    }
}

bool ctl_wants_help(int argc, char **argv, const char *help)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%s", help);
            return true;
        }
    }
    return false;
}


QmpClient *ctl_connect_or_report(const CtlOptions *o)
{
    Error *err = NULL;
    QmpClient *c = qmp_client_connect(o->socket, CONNECT_TIMEOUT_MS, &err);
    if (!c) {
        error_report("%s (is stratad running with --monitor on this "
                     "socket? use -s SOCKET)", error_get_pretty(err));
        error_free(err);
    }
    return c;
}

json_t *ctl_execute(QmpClient *c, const char *cmd, json_t *args,
                    Error **errp)
{
    /* A person at the terminal can interrupt a slow command. */
    return qmp_client_execute(c, cmd, args, QMP_CLIENT_WAIT_FOREVER, NULL,
                              errp);
}

json_t *ctl_query(const CtlOptions *o, const char *cmd, json_t *args)
{
    QmpClient *c = ctl_connect_or_report(o);
    if (!c) {
        return NULL;
    }
    Error *err = NULL;
    json_t *ret = ctl_execute(c, cmd, args, &err);
    qmp_client_close(c);
    if (!ret) {
        error_report_err(err);
    }
    return ret;
}

int main(int argc, char **argv)
{
    error_set_progname("strata-ctl");
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    CtlOptions o = { .socket = getenv("STRATA_SOCKET") };
    if (!o.socket || !*o.socket) {
        o.socket = DEFAULT_SOCKET;
    }
    int ch;
    /* "+": stop at the subcommand; its own options follow it. */
    while ((ch = getopt_long(argc, argv, "+s:jhV", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            o.socket = optarg;
            break;
        case 'j':
            o.json = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("strata-ctl " STRATA_VERSION "\n");
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 1;
    }
    const char *name = argv[optind];
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        if (!strcmp(subcommands[i].name, name)) {
            return subcommands[i].fn(&o, argc - optind, argv + optind);
        }
    }
    error_report("unknown command '%s' (see strata-ctl --help)", name);
    return 1;
}
