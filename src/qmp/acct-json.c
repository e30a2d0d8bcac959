/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - accounting as QMP shows it (see acct-json.h). */
#include "qmp/acct-json.h"

#include <stdio.h>

static int set_u64(json_t *obj, const char *key, uint64_t v)
{
    return json_object_set_new(obj, key, json_integer((json_int_t)v));
}

/* BlockLatencyHistogramInfo, or NULL when no histogram is set. */
static json_t *latency_histogram_json(BlockAcct *acct, BlockAcctType type)
{
    BlockAcctHistogram lh;
    if (!block_acct_get_latency_histogram(acct, type, &lh)) {
        return NULL;
    }
    json_t *bins = json_array(), *bounds = json_array();
    for (size_t i = 0; bins && bounds && i <= lh.nboundaries; i++) {
        json_array_append_new(bins, json_integer((json_int_t)lh.bins[i]));
        if (i < lh.nboundaries) {
            json_array_append_new(bounds,
                                  json_integer((json_int_t)lh.boundaries[i]));
        }
    }
    block_acct_histogram_free(&lh);
    if (!bins || !bounds) {
        json_decref(bins);
        json_decref(bounds);
        return NULL;
    }
    json_t *h = json_object();
    json_object_set_new(h, "bins", bins);
    json_object_set_new(h, "boundaries", bounds);
    return h;
}

static json_t *timed_stats_json(BlockAcct *acct, size_t i)
{
    static const char *const pct_names[BLOCK_ACCT_NPERCENTILES] = {
        "p50", "p90", "p99", "p999",
    };
    static const struct { BlockAcctType type; const char *name; } types[] = {
        { BLOCK_ACCT_READ, "rd" },
        { BLOCK_ACCT_WRITE, "wr" },
        { BLOCK_ACCT_FLUSH, "flush" },
    };
    BlockAcctTimedStats ts;
    block_acct_get_timed_stats(acct, i, &ts);
    const BlockAcctTimedOp *rd = &ts.op[BLOCK_ACCT_READ];
    const BlockAcctTimedOp *wr = &ts.op[BLOCK_ACCT_WRITE];
    const BlockAcctTimedOp *fl = &ts.op[BLOCK_ACCT_FLUSH];

    json_t *o = json_object();
    if (!o) {
        return NULL;
    }
    /* QEMU 7.2's member order (its QDict hash order). */
    set_u64(o, "avg_flush_latency_ns", fl->avg_ns);
    json_object_set_new(o, "avg_rd_queue_depth", json_real(rd->avg_queue_depth));
    set_u64(o, "min_rd_latency_ns", rd->min_ns);
    set_u64(o, "max_flush_latency_ns", fl->max_ns);
    set_u64(o, "avg_wr_latency_ns", wr->avg_ns);
    set_u64(o, "interval_length", ts.interval_length);
    set_u64(o, "max_wr_latency_ns", wr->max_ns);
    set_u64(o, "avg_rd_latency_ns", rd->avg_ns);
    set_u64(o, "max_rd_latency_ns", rd->max_ns);
    set_u64(o, "min_flush_latency_ns", fl->min_ns);
    json_object_set_new(o, "avg_wr_queue_depth", json_real(wr->avg_queue_depth));
    set_u64(o, "min_wr_latency_ns", wr->min_ns);

    /* strata: percentiles of the same window, named like QEMU's min/max. */
    if (block_acct_percentiles_enabled(acct)) {
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            for (size_t k = 0; k < BLOCK_ACCT_NPERCENTILES; k++) {
                char key[48];
                snprintf(key, sizeof(key), "%s_%s_latency_ns", pct_names[k],
                         types[t].name);
                set_u64(o, key, ts.op[types[t].type].percentile_ns[k]);
            }
        }
    }
    return o;
}

json_t *qmp_acct_stats(BlockAcct *acct, uint64_t wr_highest_offset)
{
    BlockAcctStats st;
    block_acct_get_stats(acct, &st);
    const BlockAcctOpStats *rd = &st.op[BLOCK_ACCT_READ];
    const BlockAcctOpStats *wr = &st.op[BLOCK_ACCT_WRITE];
    const BlockAcctOpStats *fl = &st.op[BLOCK_ACCT_FLUSH];
    const BlockAcctOpStats *um = &st.op[BLOCK_ACCT_UNMAP];

    json_t *timed = json_array();
    json_t *o = json_object();
    if (!timed || !o) {
        json_decref(timed);
        json_decref(o);
        return NULL;
    }
    for (size_t i = 0; i < block_acct_interval_count(acct); i++) {
        json_t *e = timed_stats_json(acct, i);
        if (e) {
            json_array_append_new(timed, e);
        }
    }

    /* QEMU 7.2 prints BlockDeviceStats in its QDict's hash order; insert
     * in that order (jansson keeps insertion order) so the text matches. */
    set_u64(o, "unmap_operations", um->ops);
    set_u64(o, "unmap_merged", um->merged_ops);
    set_u64(o, "flush_total_time_ns", fl->total_time_ns);
    set_u64(o, "wr_highest_offset", wr_highest_offset);
    set_u64(o, "wr_total_time_ns", wr->total_time_ns);
    set_u64(o, "failed_wr_operations", wr->failed_ops);
    set_u64(o, "failed_rd_operations", rd->failed_ops);
    set_u64(o, "wr_merged", wr->merged_ops);
    set_u64(o, "wr_bytes", wr->bytes);
    json_object_set_new(o, "timed_stats", timed);
    set_u64(o, "failed_unmap_operations", um->failed_ops);
    set_u64(o, "failed_flush_operations", fl->failed_ops);
    json_object_set_new(o, "account_invalid", json_boolean(st.account_invalid));
    set_u64(o, "rd_total_time_ns", rd->total_time_ns);
    set_u64(o, "invalid_unmap_operations", um->invalid_ops);
    set_u64(o, "flush_operations", fl->ops);
    set_u64(o, "wr_operations", wr->ops);
    set_u64(o, "unmap_bytes", um->bytes);
    set_u64(o, "rd_merged", rd->merged_ops);
    set_u64(o, "rd_bytes", rd->bytes);
    json_t *h = latency_histogram_json(acct, BLOCK_ACCT_WRITE);
    if (h) {
        json_object_set_new(o, "wr_latency_histogram", h);
    }
    set_u64(o, "unmap_total_time_ns", um->total_time_ns);
    set_u64(o, "invalid_flush_operations", fl->invalid_ops);
    json_object_set_new(o, "account_failed", json_boolean(st.account_failed));
    if (st.has_idle_time) {
        set_u64(o, "idle_time_ns", st.idle_time_ns);
    }
    set_u64(o, "rd_operations", rd->ops);
    set_u64(o, "invalid_wr_operations", wr->invalid_ops);
    set_u64(o, "invalid_rd_operations", rd->invalid_ops);
    h = latency_histogram_json(acct, BLOCK_ACCT_READ);
    if (h) {
        json_object_set_new(o, "rd_latency_histogram", h);
    }
    h = latency_histogram_json(acct, BLOCK_ACCT_FLUSH);
    if (h) {
        json_object_set_new(o, "flush_latency_histogram", h);
    }
    return o;
}
