/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl events: prints QMP events as they arrive. */
#include "strata-ctl/ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/units.h"

static const char help[] =
"Usage: strata-ctl [-s SOCKET] [--json] events [--follow] [--timeout SECONDS]\n"
"\n"
"Waits for the next QMP event and prints it; with --follow keeps printing\n"
"events until interrupted.  --timeout stops once SECONDS pass without an\n"
"event (exit status 2 if none came at all).  Each line shows the event's\n"
"time, name and data as key=value; --json prints the event objects as\n"
"sent.\n";

static void print_value(json_t *v)
{
    if (json_is_string(v)) {
        printf("%s", json_string_value(v));
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%s", s ? s : "?");
        free(s);
    }
}

static void print_event(json_t *ev, bool as_json)
{
    if (as_json) {
        char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("%s\n", s ? s : "");
        free(s);
        fflush(stdout);
        return;
    }
    json_t *ts = json_object_get(ev, "timestamp");
    time_t secs = (time_t)json_integer_value(json_object_get(ts, "seconds"));
    long usecs = (long)json_integer_value(json_object_get(ts, "microseconds"));
    struct tm tm;
    char when[32] = "?";
    if (localtime_r(&secs, &tm)) {
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
    }
    printf("%s.%06ld %s", when, usecs,
           json_string_value(json_object_get(ev, "event")));
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(ev, "data"), key, v) {
        printf(" %s=", key);
        print_value(v);
    }
    printf("\n");
    fflush(stdout);
}

int cmd_events(const CtlOptions *o, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv, help)) {
        return 0;
    }
    static const struct option opts[] = {
        { "follow", no_argument, NULL, 'f' },
        { "timeout", required_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    bool follow = false;
    int timeout_ms = -1;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "+ft:", opts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            follow = true;
            break;
        case 't': {
            Error *err = NULL;
            uint64_t secs;
            if (!parse_uint(optarg, 86400 * 365, &secs, &err)) {
                error_report_err(err);
                return 1;
            }
            timeout_ms = (int)(secs * 1000 > 2000000000 ? 2000000000
                                                        : secs * 1000);
            break;
        }
        default:
            fprintf(stderr, "%s", help);
            return 1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "%s", help);
        return 1;
    }
    QmpClient *c = ctl_connect_or_report(o);
    if (!c) {
        return 1;
    }
    int seen = 0;
    for (;;) {
        Error *err = NULL;
        json_t *ev = qmp_client_next_event(c, timeout_ms, &err);
        if (!ev) {
            qmp_client_close(c);
            if (err) {
                error_report_err(err);
                return 1;
            }
            return seen ? 0 : 2;
        }
        print_event(ev, o->json);
        json_decref(ev);
        seen++;
        if (!follow) {
            qmp_client_close(c);
            return 0;
        }
    }
}
