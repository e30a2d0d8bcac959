/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl stream, jobs and job: start a block-stream, list jobs (with
 * a live progress view), and pause, resume, cancel or re-rate one. */
#include "strata-ctl/ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/units.h"

static const char stream_help[] =
"Usage: strata-ctl [-s SOCKET] stream NODE [--job-id ID] [--base NODE]\n"
"                  [--backing-file NAME] [--speed RATE] [--adaptive]\n"
"                  [--on-error ACTION]\n"
"\n"
"Starts a block-stream job: the data NODE's backing chain holds is copied\n"
"into NODE while clients keep using it; then NODE no longer needs the\n"
"layers it copied.  --base keeps that node and those below it as NODE's\n"
"backing (default: copy everything, NODE stands alone).  RATE is bytes\n"
"per second with an optional unit (50M); 0 or none is unlimited.\n"
"--adaptive lets the job find its own rate, backing off while the\n"
"clients' requests slow down and copying at full speed while they are\n"
"idle; RATE is then the ceiling (docs/stream.md).\n"
"ACTION on a read error: report (default), ignore, stop, enospc, auto.\n"
"The job id defaults to stream-NODE.  Follow it with 'strata-ctl jobs\n"
"--watch'.\n";

static const char jobs_help[] =
"Usage: strata-ctl [-s SOCKET] [--json] jobs [--watch [SECONDS]]\n"
"\n"
"Lists the block jobs (query-block-jobs): id, type, status, progress and\n"
"speed.  --watch redraws every SECONDS (default 1) with a progress bar,\n"
"the rate measured between redraws and the time left at that rate,\n"
"until no job is left.\n";

static const char job_help[] =
"Usage: strata-ctl [-s SOCKET] job pause|resume|cancel ID\n"
"       strata-ctl [-s SOCKET] job set-speed ID RATE\n"
"\n"
"Pauses, resumes or cancels job ID, or changes its speed limit (bytes per\n"
"second with an optional unit; 0 is unlimited).\n";

static int run_simple(const CtlOptions *o, const char *cmd, json_t *args)
{
    json_t *r = ctl_query(o, cmd, args);
    json_decref(args);
    if (!r) {
        return 1;
    }
    json_decref(r);
    return 0;
}

int cmd_stream(const CtlOptions *o, int argc, char **argv)
{
    static const struct option opts[] = {
        { "job-id", required_argument, NULL, 'i' },
        { "base", required_argument, NULL, 'b' },
        { "backing-file", required_argument, NULL, 'f' },
        { "speed", required_argument, NULL, 'r' },
        { "on-error", required_argument, NULL, 'e' },
        { "adaptive", no_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *job_id = NULL, *base = NULL, *backing = NULL, *on_error = NULL;
    uint64_t speed = 0;
    bool has_speed = false, adaptive = false;
    int c;
    /* 0 makes glibc start over (main's own getopt stopped at "+"), and
     * lets options follow NODE. */
    optind = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': job_id = optarg; break;
        case 'b': base = optarg; break;
        case 'f': backing = optarg; break;
        case 'e': on_error = optarg; break;
        case 'a': adaptive = true; break;
        case 'r': {
            Error *err = NULL;
            if (!parse_size(optarg, &speed, &err)) {
                error_report_err(err);
                return 1;
            }
            has_speed = true;
            break;
        }
        case 'h':
            printf("%s", stream_help);
            return 0;
        default:
            fprintf(stderr, "%s", stream_help);
            return 1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "%s", stream_help);
        return 1;
    }
    const char *node = argv[optind];
    char idbuf[64];
    if (!job_id) {
        snprintf(idbuf, sizeof(idbuf), "stream-%s", node);
        job_id = idbuf;
    }
    json_t *args = json_pack("{s:s, s:s}", "job-id", job_id, "device", node);
    if (base) {
        json_object_set_new(args, "base-node", json_string(base));
    }
    if (backing) {
        json_object_set_new(args, "backing-file", json_string(backing));
    }
    if (has_speed) {
        json_object_set_new(args, "speed", json_integer((json_int_t)speed));
    }
    if (on_error) {
        json_object_set_new(args, "on-error", json_string(on_error));
    }
    if (adaptive) {
        json_object_set_new(args, "adaptive-speed", json_true());
    }
    int ret = run_simple(o, "block-stream", args);
    if (ret == 0 && !o->json) {
        printf("started job '%s' streaming into '%s'\n", job_id, node);
    }
    return ret;
}

static void job_row(CtlTable *t, json_t *j)
{
    char prog[32], speed[32], len[32];
    json_int_t off = json_integer_value(json_object_get(j, "offset"));
    json_int_t total = json_integer_value(json_object_get(j, "len"));
    snprintf(prog, sizeof(prog), "%.1f%%",
             total > 0 ? 100.0 * (double)off / (double)total : 0.0);
    json_t *sp = json_object_get(j, "speed");
    bool adaptive = json_is_true(json_object_get(j, "adaptive-speed"));
    if (adaptive) {
        /* The rate in force, which the controller moves. */
        sp = json_object_get(j, "current-speed");
    }
    if (json_integer_value(sp) == 0) {
        snprintf(speed, sizeof(speed), "unlimited");
    } else {
        size_cell(sp, speed, sizeof(speed));
        strncat(speed, adaptive ? "/s adaptive" : "/s",
                sizeof(speed) - strlen(speed) - 1);
    }
    size_cell(json_object_get(j, "len"), len, sizeof(len));
    const char *err = json_string_value(json_object_get(j, "error"));
    const char *cells[] = {
        json_string_value(json_object_get(j, "device")),
        json_string_value(json_object_get(j, "type")),
        json_string_value(json_object_get(j, "status")),
        prog, len, speed, err ? err : "",
    };
    table_add(t, cells);
}

static const char *const job_headers[] = {
    "ID", "TYPE", "STATUS", "PROGRESS", "SIZE", "SPEED", "ERROR",
};

/* One line per job: a bar, the rate since the last redraw, the ETA. */
static void draw_progress(json_t *list, json_t *prev, double dt)
{
    size_t i;
    json_t *j;
    json_array_foreach(list, i, j) {
        const char *id = json_string_value(json_object_get(j, "device"));
        double off = (double)json_integer_value(json_object_get(j, "offset"));
        double len = (double)json_integer_value(json_object_get(j, "len"));
        double before = off;
        size_t k;
        json_t *p;
        json_array_foreach(prev, k, p) {
            if (!strcmp(json_string_value(json_object_get(p, "device")), id)) {
                before = (double)json_integer_value(json_object_get(p,
                                                                   "offset"));
            }
        }
        double rate = dt > 0 ? (off - before) / dt : 0;
        char bar[41];
        int fill = len > 0 ? (int)(40 * off / len) : 0;
        for (int b = 0; b < 40; b++) {
            bar[b] = b < fill ? '#' : '.';
        }
        bar[40] = '\0';
        char ratebuf[32], eta[32];
        json_t *rv = json_integer((json_int_t)rate);
        size_cell(rv, ratebuf, sizeof(ratebuf));
        json_decref(rv);
        if (rate > 0) {
            snprintf(eta, sizeof(eta), "%.0fs", (len - off) / rate);
        } else {
            snprintf(eta, sizeof(eta), "-");
        }
        printf("%-16s [%s] %5.1f%% %10s/s  ETA %-8s %s\n", id, bar,
               len > 0 ? 100 * off / len : 0.0, ratebuf, eta,
               json_string_value(json_object_get(j, "status")));
    }
}

int cmd_jobs(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, jobs_help)) {
        return 0;
    }
    bool watch = false;
    double interval = 1;
    if (argc >= 2 && !strcmp(argv[1], "--watch")) {
        watch = true;
        if (argc == 3) {
            interval = atof(argv[2]);
        }
        if (argc > 3 || interval <= 0) {
            fprintf(stderr, "%s", jobs_help);
            return 1;
        }
    } else if (argc != 1) {
        fprintf(stderr, "%s", jobs_help);
        return 1;
    }
    if (!watch) {
        json_t *list = ctl_query(o, "query-block-jobs", NULL);
        if (!list) {
            return 1;
        }
        ctl_print_list(o, list, 7, job_headers, job_row);
        json_decref(list);
        return 0;
    }
    QmpClient *c = ctl_connect_or_report(o);
    if (!c) {
        return 1;
    }
    json_t *prev = json_array();
    struct timespec last;
    clock_gettime(CLOCK_MONOTONIC, &last);
    int ret = 0;
    for (;;) {
        Error *err = NULL;
        json_t *list = ctl_execute(c, "query-block-jobs", NULL, &err);
        if (!list) {
            error_report_err(err);
            ret = 1;
            break;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double dt = (double)(now.tv_sec - last.tv_sec) +
                    (double)(now.tv_nsec - last.tv_nsec) / 1e9;
        last = now;
        if (o->json) {
            print_json(list);
        } else {
            draw_progress(list, prev, dt);
        }
        fflush(stdout);
        json_decref(prev);
        prev = list;
        if (json_array_size(list) == 0) {
            break;
        }
        usleep((useconds_t)(interval * 1e6));
    }
    json_decref(prev);
    qmp_client_close(c);
    return ret;
}

int cmd_job(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, job_help)) {
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "%s", job_help);
        return 1;
    }
    const char *verb = argv[1], *id = argv[2];
    if (!strcmp(verb, "set-speed")) {
        uint64_t speed;
        Error *err = NULL;
        if (argc != 4) {
            fprintf(stderr, "%s", job_help);
            return 1;
        }
        if (!parse_size(argv[3], &speed, &err)) {
            error_report_err(err);
            return 1;
        }
        return run_simple(o, "block-job-set-speed",
                          json_pack("{s:s, s:I}", "device", id, "speed",
                                    (json_int_t)speed));
    }
    if (argc != 3) {
        fprintf(stderr, "%s", job_help);
        return 1;
    }
    const char *cmd = !strcmp(verb, "pause") ? "job-pause"
                      : !strcmp(verb, "resume") ? "job-resume"
                      : !strcmp(verb, "cancel") ? "job-cancel" : NULL;
    if (!cmd) {
        error_report("unknown job verb '%s' (pause, resume, cancel, "
                     "set-speed)", verb);
        return 1;
    }
    return run_simple(o, cmd, json_pack("{s:s}", "id", id));
}
