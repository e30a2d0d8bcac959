/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - Prometheus samples for block I/O accounting and node sizes. */
#include "metrics/metrics-block.h"

#include <stdio.h>
#include <string.h>

#define MAX_LABELS 8
#define NS_PER_SEC 1e9

typedef struct Series {
    MetricLabel l[MAX_LABELS];
    size_t n;
    const char *prefix;
    char name[128];
} Series;

static const char *family(Series *s, const char *suffix)
{
    snprintf(s->name, sizeof(s->name), "%s_%s", s->prefix, suffix);
    return s->name;
}

static bool has_bytes(BlockAcctType t)
{
    return t != BLOCK_ACCT_FLUSH;   /* QEMU has no flush bytes or merges */
}

static void write_op_counters(MetricsWriter *w, Series *s,
                              const BlockAcctOpStats *st, BlockAcctType t)
{
    if (has_bytes(t)) {
        metrics_counter(w, family(s, "bytes_total"),
                        "Bytes transferred by successful requests "
                        "(write includes write-zeroes).",
                        s->l, s->n, (double)st->bytes);
    }
    metrics_counter(w, family(s, "requests_total"),
                    "Requests completed successfully.", s->l, s->n,
                    (double)st->ops);
    metrics_counter(w, family(s, "failed_requests_total"),
                    "Requests that failed with an I/O error.", s->l, s->n,
                    (double)st->failed_ops);
    metrics_counter(w, family(s, "invalid_requests_total"),
                    "Requests rejected before any I/O (out of range, "
                    "misaligned, read-only).", s->l, s->n,
                    (double)st->invalid_ops);
    if (has_bytes(t)) {
        metrics_counter(w, family(s, "merged_requests_total"),
                        "Requests merged into another request.", s->l, s->n,
                        (double)st->merged_ops);
    }
    metrics_counter(w, family(s, "request_time_seconds_total"),
                    "Total latency of accounted requests (failed ones only "
                    "when account_failed is on).", s->l, s->n,
                    (double)st->total_time_ns / NS_PER_SEC);
    metrics_gauge(w, family(s, "requests_in_flight"),
                  "Requests started and not yet completed (queue depth).",
                  s->l, s->n, (double)st->in_flight);
}

static void write_latency_histogram(MetricsWriter *w, Series *s,
                                    BlockAcct *acct, BlockAcctType t,
                                    const BlockAcctOpStats *st)
{
    const uint64_t *bounds_ns;
    size_t nb = block_acct_prometheus_bounds(&bounds_ns);
    double bounds[32];
    uint64_t counts[33];
    if (nb > 32) {
        nb = 32;
    }
    for (size_t i = 0; i < nb; i++) {
        bounds[i] = (double)bounds_ns[i] / NS_PER_SEC;
    }
    block_acct_get_latency_buckets(acct, t, counts);
    metrics_histogram(w, family(s, "latency_seconds"),
                      "Request latency (same requests as "
                      "request_time_seconds_total).",
                      s->l, s->n, bounds, nb, counts,
                      (double)st->total_time_ns / NS_PER_SEC);
}

static void write_window(MetricsWriter *w, Series *s, const BlockAcctTimedOp *o)
{
    /* Not "quantile": Prometheus reserves that label for summaries. */
    static const char *const percentiles[BLOCK_ACCT_NPERCENTILES] = {
        "50", "90", "99", "99.9",
    };
    metrics_gauge(w, family(s, "window_requests"),
                  "Requests accounted in the latest window of the interval.",
                  s->l, s->n, (double)o->count);
    metrics_gauge(w, family(s, "window_latency_min_seconds"),
                  "Minimum latency over the interval (QEMU timed_stats).",
                  s->l, s->n, (double)o->min_ns / NS_PER_SEC);
    metrics_gauge(w, family(s, "window_latency_avg_seconds"),
                  "Average latency over the interval (QEMU timed_stats).",
                  s->l, s->n, (double)o->avg_ns / NS_PER_SEC);
    metrics_gauge(w, family(s, "window_latency_max_seconds"),
                  "Maximum latency over the interval (QEMU timed_stats).",
                  s->l, s->n, (double)o->max_ns / NS_PER_SEC);
    metrics_gauge(w, family(s, "window_queue_depth"),
                  "Average queue depth over the interval (QEMU timed_stats).",
                  s->l, s->n, o->avg_queue_depth);
    if (s->n + 1 > MAX_LABELS) {
        return;
    }
    for (size_t k = 0; k < BLOCK_ACCT_NPERCENTILES; k++) {
        s->l[s->n] = (MetricLabel){ "percentile", percentiles[k] };
        metrics_gauge(w, family(s, "window_latency_percentile_seconds"),
                      "Latency percentile over the interval (within 3.2%).",
                      s->l, s->n + 1, (double)o->percentile_ns[k] / NS_PER_SEC);
    }
}

void metrics_write_block_acct(MetricsWriter *w, const char *prefix,
                              const MetricLabel *labels, size_t nlabels,
                              BlockAcct *acct)
{
    Series s = { .prefix = prefix };
    if (nlabels > MAX_LABELS - 3) {
        nlabels = MAX_LABELS - 3;
    }
    memcpy(s.l, labels, nlabels * sizeof(*labels));
    s.n = nlabels;

    BlockAcctStats st;
    block_acct_get_stats(acct, &st);
    if (st.has_idle_time) {
        metrics_gauge(w, family(&s, "idle_seconds"),
                      "Time since the last accounted request.", s.l, s.n,
                      (double)st.idle_time_ns / NS_PER_SEC);
    }

    s.n = nlabels + 1;
    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        s.l[nlabels] = (MetricLabel){ "op", block_acct_type_name((BlockAcctType)t) };
        write_op_counters(w, &s, &st.op[t], (BlockAcctType)t);
        write_latency_histogram(w, &s, acct, (BlockAcctType)t, &st.op[t]);
    }

    size_t ni = block_acct_interval_count(acct);
    for (size_t i = 0; i < ni; i++) {
        BlockAcctTimedStats ts;
        char interval[16];
        block_acct_get_timed_stats(acct, i, &ts);
        snprintf(interval, sizeof(interval), "%u", ts.interval_length);
        for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
            s.l[nlabels] = (MetricLabel){ "op", block_acct_type_name((BlockAcctType)t) };
            s.l[nlabels + 1] = (MetricLabel){ "interval", interval };
            s.n = nlabels + 2;
            write_window(w, &s, &ts.op[t]);
        }
    }
}

void metrics_write_node_sizes(MetricsWriter *w, const MetricLabel *labels,
                              size_t nlabels, const MetricsNodeSizes *s)
{
    metrics_gauge(w, "strata_node_capacity_bytes",
                  "Virtual size of the node.", labels, nlabels,
                  (double)s->capacity);
    metrics_gauge(w, "strata_node_allocation_bytes",
                  "Highest host offset in use under the node (allocation "
                  "of a thin volume).", labels, nlabels,
                  (double)s->allocation);
    if (s->physical >= 0) {
        metrics_gauge(w, "strata_node_physical_bytes",
                      "Bytes the node's storage occupies.", labels, nlabels,
                      (double)s->physical);
    }
    metrics_gauge(w, "strata_node_write_threshold_bytes",
                  "Armed write threshold, 0 when none.", labels, nlabels,
                  (double)s->write_threshold);
}

void metrics_write_origin_stats(MetricsWriter *w, const MetricLabel *labels,
                                size_t nlabels, BlockAcct *acct)
{
    Series s = { .prefix = "strata_node_origin" };
    if (nlabels > MAX_LABELS - 2) {
        nlabels = MAX_LABELS - 2;
    }
    memcpy(s.l, labels, nlabels * sizeof(*labels));
    s.n = nlabels + 2;
    for (int o = 0; o < BLOCK_ORIGIN__MAX; o++) {
        BlockAcctOpStats st[BLOCK_ACCT__MAX];
        block_acct_get_origin_stats(acct, (BlockOrigin)o, st);
        s.l[nlabels + 1] = (MetricLabel){ "origin",
                                          block_origin_name((BlockOrigin)o) };
        for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
            s.l[nlabels] = (MetricLabel){
                "op", block_acct_type_name((BlockAcctType)t) };
            if (has_bytes((BlockAcctType)t)) {
                metrics_counter(w, family(&s, "bytes_total"),
                                "Bytes of successful requests, by origin.",
                                s.l, s.n, (double)st[t].bytes);
            }
            metrics_counter(w, family(&s, "requests_total"),
                            "Requests completed successfully, by origin.",
                            s.l, s.n, (double)st[t].ops);
            metrics_counter(w, family(&s, "failed_requests_total"),
                            "Requests that failed, by origin.", s.l, s.n,
                            (double)st[t].failed_ops);
            metrics_counter(w, family(&s, "request_time_seconds_total"),
                            "Total latency of accounted requests, by origin.",
                            s.l, s.n, (double)st[t].total_time_ns / NS_PER_SEC);
        }
    }
}
