/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-ctl stats: I/O rates and latency per export and per node, from
 * query-blockstats.  Rates need two samples: the command reads the
 * statistics, waits --interval seconds (--watch N: N seconds between
 * refreshes), reads them again and reports the difference. */
#include "strata-ctl/ctl.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/units.h"

static const char help[] =
"Usage: strata-ctl [-s SOCKET] [--json] stats [--nodes] [--interval SECS]\n"
"                  [--watch SECS [--count N]]\n"
"\n"
"I/O per export (what clients see) and, with --nodes, per block node\n"
"(what it costs underneath): bytes and requests per second over the\n"
"sampling interval, failed and invalid requests since start, average\n"
"queue depth and p50/p99 read and write latency over the shortest\n"
"stats interval (query-blockstats timed_stats).\n"
"\n"
"  --nodes           also list every block node\n"
"  --interval SECS   sampling time for the rates (default 1)\n"
"  --watch SECS      refresh in place every SECS seconds until interrupted\n"
"  --count N         with --watch: stop after N refreshes\n"
"\n"
"--json prints, per refresh, one JSON array of {\"name\", \"level\",\n"
"\"interval\", \"rates\": {...}, \"stats\": query-blockstats' stats}.\n";

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps, returning early (false) when interrupted. */
static bool nap(double secs)
{
    double end = now_s() + secs;
    while (!interrupted) {
        double left = end - now_s();
        if (left <= 0) {
            return true;
        }
        struct timespec ts = { (time_t)left,
                               (long)((left - (double)(time_t)left) * 1e9) };
        nanosleep(&ts, NULL);
    }
    return false;
}

/* One sample: [{"name", "level", "stats"}] for exports, then nodes. */
static json_t *sample(QmpClient *c, bool nodes, Error **errp)
{
    json_t *out = json_array();
    for (int pass = 0; pass < (nodes ? 2 : 1); pass++) {
        json_t *args = pass ? json_pack("{s:b}", "query-nodes", 1) : NULL;
        json_t *list = ctl_execute(c, "query-blockstats", args, errp);
        json_decref(args);
        if (!list) {
            json_decref(out);
            return NULL;
        }
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            json_t *name = json_object_get(e, pass ? "node-name" : "device");
            json_array_append_new(out, json_pack(
                "{s:O, s:s, s:O}", "name", name ? name : json_null(),
                "level", pass ? "node" : "export",
                "stats", json_object_get(e, "stats")));
        }
        json_decref(list);
    }
    return out;
}

static uint64_t stat_u64(json_t *stats, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(stats, key));
    return v > 0 ? (uint64_t)v : 0;
}

static json_t *find_entry(json_t *list, json_t *like)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        if (json_equal(json_object_get(e, "name"), json_object_get(like, "name"))
            && json_equal(json_object_get(e, "level"),
                          json_object_get(like, "level"))) {
            return e;
        }
    }
    return NULL;
}

/* Per-second differences of the counters between two samples. */
static json_t *rates(json_t *before, json_t *after, double secs)
{
    static const char *const keys[] = {
        "rd_bytes", "wr_bytes", "unmap_bytes", "rd_operations",
        "wr_operations", "flush_operations", "unmap_operations",
    };
    json_t *r = json_object();
    json_t *b = json_object_get(before, "stats");
    json_t *a = json_object_get(after, "stats");
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        uint64_t x = b ? stat_u64(b, keys[i]) : 0, y = stat_u64(a, keys[i]);
        char name[48];
        snprintf(name, sizeof(name), "%s_per_sec", keys[i]);
        json_object_set_new(r, name, json_real(y > x && secs > 0
                                               ? (double)(y - x) / secs : 0.0));
    }
    return r;
}

static const char *fmt_latency(uint64_t ns, char *buf, size_t len)
{
    if (ns == 0) {
        return "-";
    }
    if (ns < 1000000) {
        snprintf(buf, len, "%.0fus", (double)ns / 1e3);
    } else if (ns < 1000000000) {
        snprintf(buf, len, "%.1fms", (double)ns / 1e6);
    } else {
        snprintf(buf, len, "%.2fs", (double)ns / 1e9);
    }
    return buf;
}

static void stats_row(CtlTable *t, json_t *e)
{
    json_t *st = json_object_get(e, "stats");
    json_t *r = json_object_get(e, "rates");
    json_t *win = json_array_get(json_object_get(st, "timed_stats"), 0);
    char rb[32], wb[32], ri[32], wi[32], fl[32], fa[32], in[32], qd[32];
    char l[4][32];
    format_size((uint64_t)json_real_value(
        json_object_get(r, "rd_bytes_per_sec")), rb, sizeof(rb));
    format_size((uint64_t)json_real_value(
        json_object_get(r, "wr_bytes_per_sec")), wb, sizeof(wb));
    snprintf(ri, sizeof(ri), "%.0f",
             json_real_value(json_object_get(r, "rd_operations_per_sec")));
    snprintf(wi, sizeof(wi), "%.0f",
             json_real_value(json_object_get(r, "wr_operations_per_sec")));
    snprintf(fl, sizeof(fl), "%.0f", json_real_value(
        json_object_get(r, "flush_operations_per_sec")));
    snprintf(fa, sizeof(fa), "%llu", (unsigned long long)(
        stat_u64(st, "failed_rd_operations") +
        stat_u64(st, "failed_wr_operations") +
        stat_u64(st, "failed_flush_operations") +
        stat_u64(st, "failed_unmap_operations")));
    snprintf(in, sizeof(in), "%llu", (unsigned long long)(
        stat_u64(st, "invalid_rd_operations") +
        stat_u64(st, "invalid_wr_operations") +
        stat_u64(st, "invalid_flush_operations") +
        stat_u64(st, "invalid_unmap_operations")));
    snprintf(qd, sizeof(qd), "%.2f",
             json_number_value(json_object_get(win, "avg_rd_queue_depth")) +
             json_number_value(json_object_get(win, "avg_wr_queue_depth")));
    static const char *const pk[] = {
        "p50_rd_latency_ns", "p99_rd_latency_ns",
        "p50_wr_latency_ns", "p99_wr_latency_ns",
    };
    const char *lat[4];
    for (int k = 0; k < 4; k++) {
        lat[k] = fmt_latency(stat_u64(win, pk[k]), l[k], sizeof(l[k]));
    }
    const char *cells[] = {
        json_string_value(json_object_get(e, "level")),
        json_string_value(json_object_get(e, "name")),
        rb, wb, ri, wi, fl, fa, in, qd, lat[0], lat[1], lat[2], lat[3],
    };
    table_add(t, cells);
}

static void print_table(json_t *report)
{
    static const char *const headers[] = {
        "LEVEL", "NAME", "READ/s", "WRITE/s", "R-IOPS", "W-IOPS", "FLUSH/s",
        "FAILED", "INVALID", "QD", "RD-P50", "RD-P99", "WR-P50", "WR-P99",
    };
    table_print_list(report, 14, headers, stats_row);
}

int cmd_stats(const CtlOptions *o, int argc, char **argv)
{
    static const struct option opts[] = {
        { "nodes", no_argument, NULL, 'n' },
        { "interval", required_argument, NULL, 'i' },
        { "watch", required_argument, NULL, 'w' },
        { "count", required_argument, NULL, 'c' },
        { NULL, 0, NULL, 0 },
    };
    bool nodes = false, watch = false;
    double interval = 1.0;
    long count = 0;
    int ch;

    if (ctl_wants_help(argc, argv, help)) {
        return 0;
    }
    optind = 1;
    opterr = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'n':
            nodes = true;
            break;
        case 'w':
            watch = true;
            /* fall through */
        case 'i':
            interval = strtod(optarg, &end);
            if (*end || !(interval > 0 && interval <= 86400)) {
                fprintf(stderr, "strata-ctl stats: invalid number of seconds "
                        "'%s' (use e.g. 1 or 0.5)\n", optarg);
                return 1;
            }
            break;
        case 'c':
            count = strtol(optarg, &end, 10);
            if (*end || count <= 0) {
                fprintf(stderr, "strata-ctl stats: invalid --count '%s'\n",
                        optarg);
                return 1;
            }
            break;
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
    signal(SIGINT, on_sigint);

    Error *err = NULL;
    int rc = 0;
    json_t *prev = sample(c, nodes, &err);
    double prev_t = now_s();
    for (long n = 0; prev && (!watch || !count || n < count); n++) {
        if (!nap(interval)) {
            break;
        }
        json_t *cur = sample(c, nodes, &err);
        double cur_t = now_s();
        if (!cur) {
            break;
        }
        json_t *report = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(cur, i, e) {
            json_t *r = json_deep_copy(e);
            json_object_set_new(r, "interval", json_real(cur_t - prev_t));
            json_object_set_new(r, "rates",
                                rates(find_entry(prev, e), e, cur_t - prev_t));
            json_array_append_new(report, r);
        }
        if (o->json) {
            char *s = json_dumps(report, JSON_PRESERVE_ORDER | JSON_COMPACT);
            if (s) {
                printf("%s\n", s);
                free(s);
            }
        } else {
            if (watch && isatty(STDOUT_FILENO)) {
                printf("\033[H\033[2J");    /* home + clear: refresh in place */
            }
            print_table(report);
            if (watch && !isatty(STDOUT_FILENO)) {
                printf("\n");
            }
        }
        fflush(stdout);
        json_decref(report);
        json_decref(prev);
        prev = cur;
        prev_t = cur_t;
        if (!watch) {
            break;
        }
    }
    if (err) {
        error_report_err(err);
        rc = 1;
    }
    json_decref(prev);
    qmp_client_close(c);
    return rc;
}
