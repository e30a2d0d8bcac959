/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: BlockAcct rules (QEMU's block/accounting.c), timed stats,
 * percentiles, histograms and the query-blockstats JSON, all with exact
 * numbers from an injected clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "block/accounting.h"
#include "nbd/nbd.h"
#include "qmp/acct-json.h"

#define T0 INT64_C(5000000000)

static int64_t fake_now;

static int64_t fake_clock(void *opaque)
{
    return fake_now;
}

static BlockAcct *new_acct(const uint32_t *intervals, size_t n, bool invalid,
                           bool failed)
{
    BlockAcctOptions o;
    block_acct_options_init(&o);
    o.intervals = intervals;
    o.n_intervals = n;
    o.account_invalid = invalid;
    o.account_failed = failed;
    o.clock = fake_clock;
    fake_now = T0;
    BlockAcct *acct = block_acct_new(&o, NULL);
    assert_non_null(acct);
    return acct;
}

/* One request from start at t0 to done (or failed) at t1. */
static void io(BlockAcct *acct, BlockAcctType type, uint64_t bytes,
               int64_t t0, int64_t t1, bool failed)
{
    BlockAcctCookie c;
    fake_now = T0 + t0;
    block_acct_start(acct, &c, type, bytes);
    fake_now = T0 + t1;
    if (failed) {
        block_acct_failed(acct, &c);
    } else {
        block_acct_done(acct, &c);
    }
}

static void test_defaults(void **state)
{
    BlockAcctOptions o;
    block_acct_options_init(&o);
    assert_true(o.account_invalid);
    assert_true(o.account_failed);
    assert_int_equal(o.n_intervals, 3);
    assert_int_equal(o.intervals[0], 1);
    assert_int_equal(o.intervals[1], 60);
    assert_int_equal(o.intervals[2], 3600);
    assert_string_equal(block_acct_type_name(BLOCK_ACCT_UNMAP), "unmap");
    assert_null(block_acct_type_name(BLOCK_ACCT_NONE));
}

static void test_invalid_interval(void **state)
{
    BlockAcctOptions o;
    block_acct_options_init(&o);
    const uint32_t iv[] = { 1, 0 };
    o.intervals = iv;
    o.n_intervals = 2;
    Error *err = NULL;
    assert_null(block_acct_new(&o, &err));
    assert_string_equal(error_get_pretty(err), "Invalid interval length: 0");
    error_free(err);
}

static void test_counts(void **state)
{
    BlockAcct *acct = new_acct(NULL, 0, true, true);
    BlockAcctStats st;

    block_acct_get_stats(acct, &st);
    assert_false(st.has_idle_time);

    io(acct, BLOCK_ACCT_READ, 4096, 100, 600, false);
    io(acct, BLOCK_ACCT_WRITE, 8192, 1000, 1300, false);
    io(acct, BLOCK_ACCT_WRITE, 512, 2000, 2100, false);   /* write-zeroes */
    io(acct, BLOCK_ACCT_FLUSH, 0, 3000, 3050, false);
    io(acct, BLOCK_ACCT_UNMAP, 65536, 4000, 4070, false);
    fake_now = T0 + 4500;
    block_acct_invalid(acct, BLOCK_ACCT_READ);
    block_acct_invalid(acct, BLOCK_ACCT_WRITE);
    block_acct_invalid(acct, BLOCK_ACCT_WRITE);
    io(acct, BLOCK_ACCT_READ, 4096, 5000, 5400, true);
    block_acct_merge_done(acct, BLOCK_ACCT_WRITE, 3);

    fake_now = T0 + 6000;
    block_acct_get_stats(acct, &st);
    const BlockAcctOpStats *rd = &st.op[BLOCK_ACCT_READ];
    const BlockAcctOpStats *wr = &st.op[BLOCK_ACCT_WRITE];
    const BlockAcctOpStats *fl = &st.op[BLOCK_ACCT_FLUSH];
    const BlockAcctOpStats *um = &st.op[BLOCK_ACCT_UNMAP];
    assert_int_equal(rd->bytes, 4096);
    assert_int_equal(rd->ops, 1);
    assert_int_equal(rd->failed_ops, 1);
    assert_int_equal(rd->invalid_ops, 1);
    assert_int_equal(rd->total_time_ns, 500 + 400);
    assert_int_equal(wr->bytes, 8704);
    assert_int_equal(wr->ops, 2);
    assert_int_equal(wr->invalid_ops, 2);
    assert_int_equal(wr->failed_ops, 0);
    assert_int_equal(wr->merged_ops, 3);
    assert_int_equal(wr->total_time_ns, 400);
    assert_int_equal(fl->ops, 1);
    assert_int_equal(fl->bytes, 0);
    assert_int_equal(fl->total_time_ns, 50);
    assert_int_equal(um->bytes, 65536);
    assert_int_equal(um->ops, 1);
    assert_int_equal(um->total_time_ns, 70);
    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        assert_int_equal(st.op[t].in_flight, 0);
    }
    assert_true(st.has_idle_time);
    assert_int_equal(st.idle_time_ns, 600);   /* last access: the failure */
    assert_true(st.account_invalid);
    assert_true(st.account_failed);
    block_acct_free(acct);
}

static void test_account_failed_off(void **state)
{
    const uint32_t iv[] = { 60 };
    BlockAcct *acct = new_acct(iv, 1, true, false);
    const uint64_t b[] = { 100, 1000 };
    block_acct_set_latency_histogram(acct, BLOCK_ACCT_READ,
                                     latency_bins_new(b, 2, NULL));

    io(acct, BLOCK_ACCT_READ, 4096, 0, 400, true);
    BlockAcctStats st;
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_READ].failed_ops, 1);
    assert_int_equal(st.op[BLOCK_ACCT_READ].ops, 0);
    assert_int_equal(st.op[BLOCK_ACCT_READ].bytes, 0);
    assert_int_equal(st.op[BLOCK_ACCT_READ].total_time_ns, 0);
    assert_false(st.has_idle_time);     /* failure did not touch it */
    assert_false(st.account_failed);

    BlockAcctTimedStats ts;
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].count, 0);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].max_ns, 0);

    uint64_t buckets[64];
    block_acct_get_latency_buckets(acct, BLOCK_ACCT_READ, buckets);
    const uint64_t *bounds;
    size_t nb = block_acct_prometheus_bounds(&bounds);
    uint64_t total = 0;
    for (size_t i = 0; i <= nb; i++) {
        total += buckets[i];
    }
    assert_int_equal(total, 0);

    /* ...but QEMU's latency histogram counts failures regardless. */
    json_t *j = qmp_acct_stats(acct, 0);
    json_t *bins = json_object_get(json_object_get(j, "rd_latency_histogram"),
                                   "bins");
    assert_int_equal(json_integer_value(json_array_get(bins, 1)), 1);   /* 400 in [100, 1000) */
    json_decref(j);

    /* With account_failed on, the same failure counts everywhere. */
    block_acct_set_account_failed(acct, true);
    io(acct, BLOCK_ACCT_READ, 4096, 1000, 1400, true);
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_READ].failed_ops, 2);
    assert_int_equal(st.op[BLOCK_ACCT_READ].total_time_ns, 400);
    assert_true(st.has_idle_time);
    assert_int_equal(st.idle_time_ns, 0);
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].count, 1);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].max_ns, 400);
    block_acct_free(acct);
}

static void test_account_invalid(void **state)
{
    BlockAcct *acct = new_acct(NULL, 0, false, true);
    BlockAcctStats st;
    fake_now = T0 + 100;
    block_acct_invalid(acct, BLOCK_ACCT_WRITE);
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_WRITE].invalid_ops, 1);
    assert_int_equal(st.op[BLOCK_ACCT_WRITE].total_time_ns, 0);
    assert_false(st.has_idle_time);
    assert_false(st.account_invalid);

    block_acct_set_account_invalid(acct, true);
    block_acct_invalid(acct, BLOCK_ACCT_FLUSH);
    fake_now = T0 + 350;
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_FLUSH].invalid_ops, 1);
    assert_int_equal(st.op[BLOCK_ACCT_FLUSH].total_time_ns, 0);
    assert_true(st.has_idle_time);
    assert_int_equal(st.idle_time_ns, 250);
    block_acct_free(acct);
}

static void test_idle_time(void **state)
{
    BlockAcct *acct = new_acct(NULL, 0, true, true);
    BlockAcctStats st;
    io(acct, BLOCK_ACCT_READ, 512, 0, 10, false);
    fake_now = T0 + 1010;
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.idle_time_ns, 1000);
    fake_now = T0 + 5010;
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.idle_time_ns, 5000);
    io(acct, BLOCK_ACCT_WRITE, 512, 5500, 6000, false);
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.idle_time_ns, 0);
    block_acct_free(acct);
}

static void test_in_flight_and_double_done(void **state)
{
    BlockAcct *acct = new_acct(NULL, 0, true, true);
    BlockAcctCookie a, b;
    BlockAcctStats st;
    block_acct_start(acct, &a, BLOCK_ACCT_READ, 100);
    block_acct_start(acct, &b, BLOCK_ACCT_READ, 100);
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_READ].in_flight, 2);
    block_acct_done(acct, &a);
    block_acct_done(acct, &a);      /* ignored */
    block_acct_failed(acct, &a);    /* ignored */
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_READ].in_flight, 1);
    assert_int_equal(st.op[BLOCK_ACCT_READ].ops, 1);
    assert_int_equal(st.op[BLOCK_ACCT_READ].failed_ops, 0);
    block_acct_failed(acct, &b);
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_READ].in_flight, 0);
    assert_int_equal(st.op[BLOCK_ACCT_READ].failed_ops, 1);
    block_acct_free(acct);
}

#define P1 INT64_C(1333333333)          /* 1 s stretched by 4/3 */
#define HALF1 INT64_C(666666666)

static void test_timed_stats(void **state)
{
    const uint32_t iv[] = { 1, 60 };
    BlockAcct *acct = new_acct(iv, 2, true, true);
    io(acct, BLOCK_ACCT_READ, 512, 0, 1000, false);
    io(acct, BLOCK_ACCT_READ, 512, 1000, 4000, false);
    io(acct, BLOCK_ACCT_WRITE, 512, 4000, 4500, false);
    fake_now = T0 + 5000;

    assert_int_equal(block_acct_interval_count(acct), 2);
    BlockAcctTimedStats ts;
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(ts.interval_length, 1);
    const BlockAcctTimedOp *rd = &ts.op[BLOCK_ACCT_READ];
    assert_int_equal(rd->count, 2);
    assert_int_equal(rd->min_ns, 1000);
    assert_int_equal(rd->max_ns, 3000);
    assert_int_equal(rd->avg_ns, 2000);
    /* queue depth = sum / time covered by the older window */
    assert_true(rd->avg_queue_depth == 4000.0 / (double)(P1 - HALF1 + 5000));
    assert_true(ts.op[BLOCK_ACCT_WRITE].avg_queue_depth ==
                500.0 / (double)(P1 - HALF1 + 5000));
    /* 2 samples: p50 is the first (1000), the others the second (3000);
     * bucket midpoints are clamped to the exact min/max. */
    assert_int_equal(rd->percentile_ns[0], 1000);
    assert_int_equal(rd->percentile_ns[1], 3000);
    assert_int_equal(rd->percentile_ns[2], 3000);
    assert_int_equal(rd->percentile_ns[3], 3000);
    assert_int_equal(ts.op[BLOCK_ACCT_FLUSH].count, 0);
    assert_int_equal(ts.op[BLOCK_ACCT_FLUSH].percentile_ns[0], 0);

    block_acct_get_timed_stats(acct, 1, &ts);
    assert_int_equal(ts.interval_length, 60);
    assert_true(ts.op[BLOCK_ACCT_READ].avg_queue_depth ==
                4000.0 / (40000000000.0 + 5000));

    /* After 4/3 s both 1 s windows have been emptied; 60 s keeps all. */
    fake_now = T0 + P1;
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].count, 0);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].max_ns, 0);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].percentile_ns[3], 0);
    assert_true(ts.op[BLOCK_ACCT_READ].avg_queue_depth == 0.0);
    block_acct_get_timed_stats(acct, 1, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].count, 2);

    /* A new sample is alone in the 1 s window (percentile histograms are
     * emptied with their window). */
    io(acct, BLOCK_ACCT_READ, 512, P1 + 10, P1 + 2010, false);
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].count, 1);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].min_ns, 2000);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].percentile_ns[0], 2000);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].percentile_ns[3], 2000);
    block_acct_get_timed_stats(acct, 1, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].count, 3);
    /* median 2000 ns reads as its bucket's midpoint, [1984, 2048) */
    assert_int_equal(ts.op[BLOCK_ACCT_READ].percentile_ns[0], 2016);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].percentile_ns[3], 3000);
    block_acct_free(acct);
}

static void test_half_window_rollover(void **state)
{
    /* A sample in the first half-window survives the first expiration
     * (the other window still holds it) and not the second. */
    const uint32_t iv[] = { 1 };
    BlockAcct *acct = new_acct(iv, 1, true, true);
    io(acct, BLOCK_ACCT_WRITE, 512, 0, 700, false);
    io(acct, BLOCK_ACCT_WRITE, 512, HALF1, HALF1 + 300, false);
    BlockAcctTimedStats ts;
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_WRITE].count, 2);
    assert_int_equal(ts.op[BLOCK_ACCT_WRITE].min_ns, 300);
    assert_int_equal(ts.op[BLOCK_ACCT_WRITE].max_ns, 700);
    fake_now = T0 + P1;
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_WRITE].count, 1);
    assert_int_equal(ts.op[BLOCK_ACCT_WRITE].max_ns, 300);
    assert_int_equal(ts.op[BLOCK_ACCT_WRITE].percentile_ns[0], 300);
    block_acct_free(acct);
}

static void test_prometheus_buckets(void **state)
{
    BlockAcct *acct = new_acct(NULL, 0, true, true);
    const uint64_t *bounds;
    size_t nb = block_acct_prometheus_bounds(&bounds);
    assert_int_equal(bounds[0], 10000);
    /* le is inclusive: exactly 10 us is in the first bucket. */
    io(acct, BLOCK_ACCT_FLUSH, 0, 0, 10000, false);
    io(acct, BLOCK_ACCT_FLUSH, 0, 0, 10001, false);
    io(acct, BLOCK_ACCT_FLUSH, 0, 0, 20000000000, false);
    uint64_t c[64];
    block_acct_get_latency_buckets(acct, BLOCK_ACCT_FLUSH, c);
    assert_int_equal(c[0], 1);
    assert_int_equal(c[1], 1);
    assert_int_equal(c[nb], 1);
    block_acct_free(acct);
}

static void test_latency_histogram_set_clear(void **state)
{
    BlockAcct *acct = new_acct(NULL, 0, true, true);
    const uint64_t b[] = { 10000, 100000, 1000000 };
    block_acct_set_latency_histogram(acct, BLOCK_ACCT_READ,
                                     latency_bins_new(b, 3, NULL));
    block_acct_set_latency_histogram(acct, BLOCK_ACCT_WRITE,
                                     latency_bins_new(b, 3, NULL));
    io(acct, BLOCK_ACCT_READ, 512, 0, 437380, false);
    io(acct, BLOCK_ACCT_READ, 512, 0, 5, false);
    json_t *j = qmp_acct_stats(acct, 0);
    char *s = json_dumps(json_object_get(j, "rd_latency_histogram"),
                         JSON_PRESERVE_ORDER | JSON_COMPACT);
    assert_string_equal(s, "{\"bins\":[1,0,1,0],"
                           "\"boundaries\":[10000,100000,1000000]}");
    free(s);
    assert_non_null(json_object_get(j, "wr_latency_histogram"));
    assert_null(json_object_get(j, "flush_latency_histogram"));
    json_decref(j);

    /* Replacing starts from zero; clearing removes every type. */
    block_acct_set_latency_histogram(acct, BLOCK_ACCT_READ,
                                     latency_bins_new(b, 1, NULL));
    j = qmp_acct_stats(acct, 0);
    s = json_dumps(json_object_get(j, "rd_latency_histogram"),
                   JSON_PRESERVE_ORDER | JSON_COMPACT);
    assert_string_equal(s, "{\"bins\":[0,0],\"boundaries\":[10000]}");
    free(s);
    json_decref(j);
    block_acct_clear_latency_histograms(acct);
    j = qmp_acct_stats(acct, 0);
    assert_null(json_object_get(j, "rd_latency_histogram"));
    assert_null(json_object_get(j, "wr_latency_histogram"));
    json_decref(j);
    block_acct_free(acct);
}

static void assert_keys(json_t *obj, const char *const *keys, size_t n)
{
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        assert_true(i < n);
        assert_string_equal(k, keys[i]);
        i++;
    }
    assert_int_equal(i, n);
}

/* The order QEMU 7.2's query-blockstats prints (observed). */
static const char *const qemu_stats_keys[] = {
    "unmap_operations", "unmap_merged", "flush_total_time_ns",
    "wr_highest_offset", "wr_total_time_ns", "failed_wr_operations",
    "failed_rd_operations", "wr_merged", "wr_bytes", "timed_stats",
    "failed_unmap_operations", "failed_flush_operations", "account_invalid",
    "rd_total_time_ns", "invalid_unmap_operations", "flush_operations",
    "wr_operations", "unmap_bytes", "rd_merged", "rd_bytes",
    "wr_latency_histogram", "unmap_total_time_ns", "invalid_flush_operations",
    "account_failed", "idle_time_ns", "rd_operations", "invalid_wr_operations",
    "invalid_rd_operations", "rd_latency_histogram", "flush_latency_histogram",
};

static void test_json_shape(void **state)
{
    const uint32_t iv[] = { 60, 3600 };
    BlockAcct *acct = new_acct(iv, 2, true, true);

    /* Before any I/O: no idle_time_ns, no histograms. */
    json_t *j = qmp_acct_stats(acct, 4096);
    const char *no_io[26];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(qemu_stats_keys) / sizeof(*qemu_stats_keys); i++) {
        const char *k = qemu_stats_keys[i];
        if (strcmp(k, "idle_time_ns") && !strstr(k, "histogram")) {
            no_io[n++] = k;
        }
    }
    assert_int_equal(n, 26);
    assert_keys(j, no_io, n);
    assert_int_equal(json_integer_value(json_object_get(j, "wr_highest_offset")),
                     4096);
    assert_true(json_is_true(json_object_get(j, "account_invalid")));
    json_decref(j);

    const uint64_t b[] = { 1000 };
    for (int t = BLOCK_ACCT_READ; t <= BLOCK_ACCT_FLUSH; t++) {
        block_acct_set_latency_histogram(acct, (BlockAcctType)t,
                                         latency_bins_new(b, 1, NULL));
    }
    io(acct, BLOCK_ACCT_WRITE, 4096, 0, 759161, false);
    io(acct, BLOCK_ACCT_FLUSH, 0, 800000, 807374, false);
    fake_now = T0 + 1000000;
    j = qmp_acct_stats(acct, 4096);
    assert_keys(j, qemu_stats_keys, 30);
    assert_int_equal(json_integer_value(json_object_get(j, "wr_bytes")), 4096);
    assert_int_equal(json_integer_value(json_object_get(j, "idle_time_ns")),
                     1000000 - 807374);

    json_t *timed = json_object_get(j, "timed_stats");
    assert_int_equal(json_array_size(timed), 2);
    static const char *const timed_keys[] = {
        "avg_flush_latency_ns", "avg_rd_queue_depth", "min_rd_latency_ns",
        "max_flush_latency_ns", "avg_wr_latency_ns", "interval_length",
        "max_wr_latency_ns", "avg_rd_latency_ns", "max_rd_latency_ns",
        "min_flush_latency_ns", "avg_wr_queue_depth", "min_wr_latency_ns",
        "p50_rd_latency_ns", "p90_rd_latency_ns", "p99_rd_latency_ns",
        "p999_rd_latency_ns", "p50_wr_latency_ns", "p90_wr_latency_ns",
        "p99_wr_latency_ns", "p999_wr_latency_ns", "p50_flush_latency_ns",
        "p90_flush_latency_ns", "p99_flush_latency_ns", "p999_flush_latency_ns",
    };
    json_t *e0 = json_array_get(timed, 0);
    assert_keys(e0, timed_keys, 24);
    assert_int_equal(json_integer_value(json_object_get(e0, "interval_length")), 60);
    assert_int_equal(json_integer_value(json_object_get(e0, "avg_wr_latency_ns")),
                     759161);
    assert_int_equal(json_integer_value(json_object_get(e0, "p99_wr_latency_ns")),
                     759161);
    assert_int_equal(json_integer_value(json_object_get(e0, "min_flush_latency_ns")),
                     7374);
    assert_true(json_is_real(json_object_get(e0, "avg_wr_queue_depth")));
    assert_true(json_real_value(json_object_get(e0, "avg_wr_queue_depth")) ==
                759161.0 / (40000000000.0 + 1000000));
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(timed, 1), "interval_length")), 3600);
    json_decref(j);
    block_acct_free(acct);
}

static void test_percentiles_off(void **state)
{
    BlockAcctOptions o;
    block_acct_options_init(&o);
    o.latency_percentiles = false;
    o.clock = fake_clock;
    fake_now = T0;
    BlockAcct *acct = block_acct_new(&o, NULL);
    io(acct, BLOCK_ACCT_READ, 512, 0, 5000, false);
    BlockAcctTimedStats ts;
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].max_ns, 5000);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].percentile_ns[0], 0);
    json_t *j = qmp_acct_stats(acct, 0);
    json_t *e0 = json_array_get(json_object_get(j, "timed_stats"), 0);
    assert_int_equal(json_object_size(e0), 12);
    json_decref(j);
    block_acct_free(acct);
}

#define THREADS 4
#define PER_THREAD 20000

static void *hammer(void *opaque)
{
    BlockAcct *acct = opaque;
    for (int i = 0; i < PER_THREAD; i++) {
        BlockAcctCookie c;
        block_acct_start(acct, &c, BLOCK_ACCT_READ, 512);
        block_acct_done(acct, &c);
    }
    return NULL;
}

static void test_threads(void **state)
{
    BlockAcctOptions o;
    block_acct_options_init(&o);
    const uint32_t iv[] = { 3600 };   /* cannot roll over during the test */
    o.intervals = iv;
    o.n_intervals = 1;
    BlockAcct *acct = block_acct_new(&o, NULL);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        pthread_create(&th[i], NULL, hammer, acct);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    BlockAcctStats st;
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_READ].ops, THREADS * PER_THREAD);
    assert_int_equal(st.op[BLOCK_ACCT_READ].bytes, THREADS * PER_THREAD * 512);
    assert_int_equal(st.op[BLOCK_ACCT_READ].in_flight, 0);
    BlockAcctTimedStats ts;
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(ts.op[BLOCK_ACCT_READ].count, THREADS * PER_THREAD);
    uint64_t c[64], total = 0;
    const uint64_t *bounds;
    size_t nb = block_acct_prometheus_bounds(&bounds);
    block_acct_get_latency_buckets(acct, BLOCK_ACCT_READ, c);
    for (size_t i = 0; i <= nb; i++) {
        total += c[i];
    }
    assert_int_equal(total, THREADS * PER_THREAD);
    block_acct_free(acct);
}

/* Lock-free completions while an injected clock rolls the windows over:
 * every call of the clock moves time by CLOCK_STEP, so the 1 s interval
 * (4/3 s windows) expires a few times during the run. */
#define ROLL_THREADS 4
#define ROLL_PER_THREAD 100000
#define CLOCK_STEP INT64_C(10000)

static _Atomic int64_t roll_clock_ns;
static _Thread_local int64_t roll_last_ns;   /* what this thread was told */
static atomic_bool roll_frozen;

static int64_t roll_clock(void *opaque)
{
    if (atomic_load(&roll_frozen)) {
        roll_last_ns = atomic_load(&roll_clock_ns);
    } else {
        roll_last_ns = atomic_fetch_add(&roll_clock_ns, CLOCK_STEP) + CLOCK_STEP;
    }
    return roll_last_ns;
}

typedef struct RollResult {
    BlockAcct *acct;
    uint64_t total_latency, min_latency, max_latency;
} RollResult;

static void *roll_hammer(void *opaque)
{
    RollResult *r = opaque;
    r->min_latency = UINT64_MAX;
    for (int i = 0; i < ROLL_PER_THREAD; i++) {
        BlockAcctCookie c;
        block_acct_start(r->acct, &c, BLOCK_ACCT_WRITE, 4096);
        int64_t start = c.start_ns;
        block_acct_done(r->acct, &c);
        /* done read the clock exactly once: that is the completion time */
        uint64_t lat = (uint64_t)(roll_last_ns - start);
        r->total_latency += lat;
        r->min_latency = lat < r->min_latency ? lat : r->min_latency;
        r->max_latency = lat > r->max_latency ? lat : r->max_latency;
    }
    return NULL;
}

static void check_timed_op(const BlockAcctTimedOp *w, uint64_t min_lat,
                           uint64_t max_lat)
{
    if (w->count == 0) {
        assert_int_equal(w->min_ns, 0);
        assert_int_equal(w->max_ns, 0);
        return;
    }
    assert_true(w->min_ns >= min_lat && w->max_ns <= max_lat);
    assert_true(w->min_ns <= w->max_ns);
    for (int k = 0; k < BLOCK_ACCT_NPERCENTILES; k++) {
        assert_true(w->percentile_ns[k] >= w->min_ns);
        assert_true(w->percentile_ns[k] <= w->max_ns);
    }
}

static void test_threads_rolling_windows(void **state)
{
    BlockAcctOptions o;
    block_acct_options_init(&o);
    const uint32_t iv[] = { 1, 3600 };
    o.intervals = iv;
    o.n_intervals = 2;
    o.clock = roll_clock;
    atomic_store(&roll_frozen, false);
    atomic_store(&roll_clock_ns, T0);
    BlockAcct *acct = block_acct_new(&o, NULL);
    assert_non_null(acct);
    const uint64_t b1[] = { 20000, 40000 };
    block_acct_set_latency_histogram(acct, BLOCK_ACCT_WRITE,
                                     latency_bins_new(b1, 2, NULL));

    RollResult res[ROLL_THREADS];
    pthread_t th[ROLL_THREADS];
    for (int i = 0; i < ROLL_THREADS; i++) {
        res[i] = (RollResult){ .acct = acct };
        pthread_create(&th[i], NULL, roll_hammer, &res[i]);
    }
    /* Readers and histogram swaps run alongside (the control path). */
    for (int i = 0; i < 200; i++) {
        BlockAcctTimedStats ts;
        block_acct_get_timed_stats(acct, 0, &ts);
        assert_true(ts.op[BLOCK_ACCT_WRITE].min_ns <=
                    ts.op[BLOCK_ACCT_WRITE].max_ns);
        if (i == 100) {
            const uint64_t b2[] = { 30000 };
            block_acct_set_latency_histogram(acct, BLOCK_ACCT_WRITE,
                                             latency_bins_new(b2, 1, NULL));
        }
        json_decref(qmp_acct_stats(acct, 0));
    }
    for (int i = 0; i < ROLL_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    atomic_store(&roll_frozen, true);
    int64_t end = atomic_load(&roll_clock_ns);
    /* The run covered several periods of the 1 s interval. */
    assert_true(end - T0 > 4 * INT64_C(1333333333));

    uint64_t total_lat = 0, min_lat = UINT64_MAX, max_lat = 0;
    for (int i = 0; i < ROLL_THREADS; i++) {
        total_lat += res[i].total_latency;
        min_lat = res[i].min_latency < min_lat ? res[i].min_latency : min_lat;
        max_lat = res[i].max_latency > max_lat ? res[i].max_latency : max_lat;
    }
    const uint64_t n = (uint64_t)ROLL_THREADS * ROLL_PER_THREAD;
    BlockAcctStats st;
    block_acct_get_stats(acct, &st);
    assert_int_equal(st.op[BLOCK_ACCT_WRITE].ops, n);
    assert_int_equal(st.op[BLOCK_ACCT_WRITE].bytes, n * 4096);
    assert_int_equal(st.op[BLOCK_ACCT_WRITE].total_time_ns, total_lat);
    assert_int_equal(st.op[BLOCK_ACCT_WRITE].in_flight, 0);
    /* The reader's queries also tick the clock, and one may come after
     * the last completion: idle time is then a few ticks, never more
     * than the run itself. */
    assert_true(st.idle_time_ns < (uint64_t)(end - T0));

    uint64_t c[64], total = 0;
    const uint64_t *bounds;
    size_t nb = block_acct_prometheus_bounds(&bounds);
    block_acct_get_latency_buckets(acct, BLOCK_ACCT_WRITE, c);
    for (size_t i = 0; i <= nb; i++) {
        total += c[i];
    }
    assert_int_equal(total, n);

    /* The 3600 s interval never rolled: it holds every completion, with
     * the exact min, max and sum. */
    BlockAcctTimedStats ts;
    block_acct_get_timed_stats(acct, 1, &ts);
    const BlockAcctTimedOp *lw = &ts.op[BLOCK_ACCT_WRITE];
    assert_int_equal(lw->count, n);
    assert_int_equal(lw->min_ns, min_lat);
    assert_int_equal(lw->max_ns, max_lat);
    assert_int_equal(lw->avg_ns, total_lat / n);
    check_timed_op(lw, min_lat, max_lat);

    /* The 1 s interval rolled: its older window holds between half and
     * all of one period's completions, within the run's extremes. */
    block_acct_get_timed_stats(acct, 0, &ts);
    const BlockAcctTimedOp *sw = &ts.op[BLOCK_ACCT_WRITE];
    assert_true(sw->count > 0 && sw->count < n);
    check_timed_op(sw, min_lat, max_lat);

    /* After both windows expire, the next values are all there is: the
     * resets left nothing of the earlier generations behind. */
    atomic_store(&roll_clock_ns, end + 2 * INT64_C(1333333333));
    BlockAcctCookie ck;
    block_acct_start(acct, &ck, BLOCK_ACCT_WRITE, 1);
    atomic_fetch_add(&roll_clock_ns, 7777);
    block_acct_done(acct, &ck);
    block_acct_get_timed_stats(acct, 0, &ts);
    assert_int_equal(sw->count, 1);
    assert_int_equal(sw->min_ns, 7777);
    assert_int_equal(sw->max_ns, 7777);
    assert_int_equal(sw->avg_ns, 7777);
    block_acct_free(acct);
}

/* block-export-add's stats-* members, from QMP (JSON values) and from
 * the command line (keyval strings). */
static void test_new_from_args(void **state)
{
    (void)state;
    BlockAcct *acct = NULL;
    Error *err = NULL;

    json_t *args = json_pack("{s:s, s:[s,s], s:s, s:b}", "id", "e0",
                             "stats-intervals", "1", "10",
                             "stats-account-invalid", "off",
                             "stats-account-failed", 1);
    assert_true(nbd_export_acct_decode(args, &acct, &err));
    assert_non_null(acct);
    assert_int_equal(block_acct_interval_count(acct), 2);
    BlockAcctTimedStats ts;
    block_acct_get_timed_stats(acct, 1, &ts);
    assert_int_equal(ts.interval_length, 10);
    BlockAcctStats st;
    block_acct_get_stats(acct, &st);
    assert_false(st.account_invalid);
    assert_true(st.account_failed);
    /* Consumed members are removed; the rest stays for the caller. */
    assert_null(json_object_get(args, "stats-intervals"));
    assert_null(json_object_get(args, "stats-account-failed"));
    assert_non_null(json_object_get(args, "id"));
    json_decref(args);
    block_acct_free(acct);

    args = json_pack("{}");
    assert_true(nbd_export_acct_decode(args, &acct, &err));
    assert_int_equal(block_acct_interval_count(acct), 3);
    json_decref(args);
    block_acct_free(acct);

    args = json_pack("{s:[i,i]}", "stats-intervals", 5, 0);
    assert_false(nbd_export_acct_decode(args, &acct, &err));
    assert_null(acct);
    assert_string_equal(error_get_pretty(err), "Invalid interval length: 0");
    assert_non_null(json_object_get(args, "stats-intervals"));
    error_free(err);
    err = NULL;
    json_decref(args);

    args = json_pack("{s:[s]}", "stats-intervals", "soon");
    assert_false(nbd_export_acct_decode(args, &acct, &err));
    assert_string_equal(error_get_pretty(err),
                        "Parameter 'stats-intervals.0' expects a number of "
                        "seconds (1 to 4294967295)");
    error_free(err);
    err = NULL;
    json_decref(args);

    args = json_pack("{s:s}", "stats-account-failed", "maybe");
    assert_false(nbd_export_acct_decode(args, &acct, &err));
    error_free(err);
    json_decref(args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_invalid_interval),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_account_failed_off),
        cmocka_unit_test(test_account_invalid),
        cmocka_unit_test(test_idle_time),
        cmocka_unit_test(test_in_flight_and_double_done),
        cmocka_unit_test(test_timed_stats),
        cmocka_unit_test(test_half_window_rollover),
        cmocka_unit_test(test_prometheus_buckets),
        cmocka_unit_test(test_latency_histogram_set_clear),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_percentiles_off),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_threads_rolling_windows),
        cmocka_unit_test(test_new_from_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
