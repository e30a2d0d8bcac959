/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp - the thin-provisioning agent's command line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata-thinp/thinp.h"

static void usage(FILE *f)
{
    fprintf(f,
"Usage: strata-thinp [OPTIONS] -s SOCKET [-s SOCKET...]\n"
"\n"
"Keeps thin volumes (qcow2 images on block devices, or nodes named with\n"
"--volume) ahead of their data: arms a write threshold on each, extends\n"
"the volume by a chunk when it is crossed or a write fails for lack of\n"
"space, re-arms, and resumes paused exports.  One key=value log line\n"
"per action on stdout.\n"
"\n"
"Options (each is also a key=value setting for --config):\n"
"  -s, --socket PATH       a stratad QMP socket (repeat for several)\n"
"  -c, --config FILE       read key=value settings from FILE\n"
"      --chunk SIZE        added per extension (default 1G)\n"
"      --free-percent N    extend when less than (100-N)%% of a chunk is\n"
"                          free (default 50)\n"
"      --max-factor F      never grow past capacity * F (default 1.1)\n"
"      --poll-interval S   seconds between polls (default 10)\n"
"      --extend-cmd CMD    run CMD to extend; {path} {size} {node} {socket}\n"
"                          are replaced, e.g. 'lvextend -L {size}b {path}'\n"
"                          (default: grow regular files and loop devices)\n"
"      --volume NODE       treat NODE as a thin volume (repeatable)\n"
"      --copying NODE      NODE is being copied: double its chunk\n"
"  -h, --help              this help\n"
"  -V, --version           print the version\n");
}

int main(int argc, char **argv)
{
    error_set_progname("strata-thinp");
    enum { OPT_CHUNK = 256, OPT_FREE, OPT_MAX, OPT_POLL, OPT_EXTEND,
           OPT_VOLUME, OPT_COPYING };
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "config", required_argument, NULL, 'c' },
        { "chunk", required_argument, NULL, OPT_CHUNK },
        { "free-percent", required_argument, NULL, OPT_FREE },
        { "max-factor", required_argument, NULL, OPT_MAX },
        { "poll-interval", required_argument, NULL, OPT_POLL },
        { "extend-cmd", required_argument, NULL, OPT_EXTEND },
        { "volume", required_argument, NULL, OPT_VOLUME },
        { "copying", required_argument, NULL, OPT_COPYING },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    ThinpConfig cfg;
    thinp_config_init(&cfg);
    int ch, status = 1;
    while ((ch = getopt_long(argc, argv, "s:c:hV", opts, NULL)) != -1) {
        Error *err = NULL;
        bool ok = true;
        const char *key = NULL;
        switch (ch) {
        case 's': key = "socket"; break;
        case OPT_CHUNK: key = "chunk"; break;
        case OPT_FREE: key = "free-percent"; break;
        case OPT_MAX: key = "max-factor"; break;
        case OPT_POLL: key = "poll-interval"; break;
        case OPT_EXTEND: key = "extend-cmd"; break;
        case OPT_VOLUME: key = "volume"; break;
        case OPT_COPYING: key = "copying"; break;
        case 'c':
            ok = thinp_config_load(&cfg, optarg, &err);
            break;
        case 'h':
            usage(stdout);
            status = 0;
            goto out;
        case 'V':
            printf("strata-thinp " STRATA_VERSION "\n");
            status = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
        if (key) {
            ok = thinp_config_set(&cfg, key, optarg, &err);
        }
        if (!ok) {
            error_report_err(err);
            goto out;
        }
    }
    if (optind < argc) {
        error_report("unexpected argument '%s' (see --help)", argv[optind]);
        goto out;
    }
    if (cfg.nsockets == 0) {
        error_report("no stratad socket given: use -s SOCKET or socket= in "
                     "a --config file");
        goto out;
    }
    status = thinp_run(&cfg);
out:
    thinp_config_free(&cfg);
    return status;
}
