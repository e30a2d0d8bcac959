/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: QEMU latency bins and the log-linear percentile histogram. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "util/histogram.h"

static void test_bins_semantics(void **state)
{
    const uint64_t b[] = { 10, 20, 30 };
    LatencyBins *lb = latency_bins_new(b, 3, NULL);
    assert_non_null(lb);
    /* N boundaries, N+1 bins: [0,10) [10,20) [20,30) [30,inf) */
    const uint64_t v[] = { 0, 9, 10, 19, 20, 29, 30, UINT64_MAX };
    const size_t want[] = { 0, 0, 1, 1, 2, 2, 3, 3 };
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(latency_bins_index(lb, v[i]), want[i]);
        latency_bins_add(lb, v[i]);
    }
    uint64_t out[4];
    latency_bins_read(lb, out);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 2);
    assert_int_equal(out[2], 2);
    assert_int_equal(out[3], 2);
    latency_bins_free(lb);
}

static void test_bins_qemu_observed(void **state)
{
    /* QEMU 7.2: boundaries [10000,100000,1000000], one 437380 ns read
     * gave "bins": [0, 0, 1, 0]. */
    const uint64_t b[] = { 10000, 100000, 1000000 };
    LatencyBins *lb = latency_bins_new(b, 3, NULL);
    latency_bins_add(lb, 437380);
    uint64_t out[4];
    latency_bins_read(lb, out);
    assert_memory_equal(out, ((uint64_t[]){ 0, 0, 1, 0 }), sizeof(out));
    latency_bins_free(lb);
}

static void test_bins_single_boundary(void **state)
{
    const uint64_t b[] = { 5 };
    LatencyBins *lb = latency_bins_new(b, 1, NULL);
    latency_bins_add(lb, 4);
    latency_bins_add(lb, 5);
    latency_bins_add(lb, 6);
    uint64_t out[2];
    latency_bins_read(lb, out);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 2);
    latency_bins_free(lb);
}

static void expect_reject(const uint64_t *b, size_t n, const char *msg)
{
    Error *err = NULL;
    assert_null(latency_bins_new(b, n, &err));
    assert_non_null(err);
    assert_string_equal(error_get_pretty(err), msg);
    error_free(err);
}

static void test_bins_reject(void **state)
{
    expect_reject(NULL, 0, "latency histogram needs at least one boundary");
    expect_reject((uint64_t[]){ 0, 5 }, 2,
                  "latency histogram boundaries must be greater than 0");
    expect_reject((uint64_t[]){ 5, 5 }, 2,
                  "latency histogram boundaries must be strictly increasing: "
                  "5 follows 5");
    expect_reject((uint64_t[]){ 10, 20, 15 }, 3,
                  "latency histogram boundaries must be strictly increasing: "
                  "15 follows 20");
}

static void test_log_layout(void **state)
{
    assert_int_equal(LOG_HISTOGRAM_BUCKETS, 434);
    assert_int_equal(log_histogram_index(0), 0);
    assert_int_equal(log_histogram_index(1023), 0);
    assert_int_equal(log_histogram_index(1024), 1);
    assert_int_equal(log_histogram_index(1024 + 63), 1);
    assert_int_equal(log_histogram_index(1024 + 64), 2);
    assert_int_equal(log_histogram_index(2048), 17);
    assert_int_equal(log_histogram_index((UINT64_C(1) << 37) - 1), 432);
    assert_int_equal(log_histogram_index(UINT64_C(1) << 37), 433);
    assert_int_equal(log_histogram_index(UINT64_MAX), 433);

    /* Contiguous, and no bucket wider than 1/16 of its start. */
    for (size_t i = 0; i + 1 < LOG_HISTOGRAM_BUCKETS; i++) {
        assert_int_equal(log_histogram_bucket_high(i),
                         log_histogram_bucket_low(i + 1));
        if (i > 0) {
            uint64_t lo = log_histogram_bucket_low(i);
            assert_true((log_histogram_bucket_high(i) - lo) * 16 <= lo);
        }
    }
    /* Every value lies in the bucket its index names. */
    for (uint64_t v = 1; v < (UINT64_C(1) << 38); v = v * 17 / 16 + 1) {
        size_t i = log_histogram_index(v);
        assert_true(log_histogram_bucket_low(i) <= v);
        assert_true(v < log_histogram_bucket_high(i));
    }
}

static const uint32_t ppm4[4] = { 500000, 900000, 990000, 999000 };

static void test_log_percentiles_accuracy(void **state)
{
    LogHistogram *h = calloc(1, sizeof(*h));
    /* 1 us .. 10 ms in 10000 equal steps */
    for (uint64_t i = 1; i <= 10000; i++) {
        log_histogram_add(h, i * 1000);
    }
    assert_int_equal(log_histogram_count(h), 10000);
    uint64_t out[4];
    log_histogram_percentiles(h, ppm4, 4, 1000, 10000000, out);
    const double exact[4] = { 5000000, 9000000, 9900000, 9990000 };
    for (int k = 0; k < 4; k++) {
        double err = ((double)out[k] - exact[k]) / exact[k];
        assert_true(err < 0.032 && err > -0.032);
    }
    free(h);
}

static void test_log_percentiles_edges(void **state)
{
    LogHistogram h;
    uint64_t out[4];
    log_histogram_clear(&h);
    log_histogram_percentiles(&h, ppm4, 4, 0, UINT64_MAX, out);
    assert_memory_equal(out, ((uint64_t[]){ 0, 0, 0, 0 }), sizeof(out));

    /* One sample: clamping to the window's exact min/max makes every
     * percentile exact. */
    log_histogram_add(&h, 123456);
    log_histogram_percentiles(&h, ppm4, 4, 123456, 123456, out);
    assert_memory_equal(out, ((uint64_t[]){ 123456, 123456, 123456, 123456 }),
                        sizeof(out));

    /* 999 fast + 1 slow: p99.9 is the 999th value (fast), nearest rank. */
    log_histogram_clear(&h);
    for (int i = 0; i < 999; i++) {
        log_histogram_add(&h, 2000);
    }
    log_histogram_add(&h, 50000000);
    log_histogram_percentiles(&h, ppm4, 4, 2000, 50000000, out);
    assert_true(out[3] < 2100);
    const uint32_t p100 = 1000000;
    log_histogram_percentiles(&h, &p100, 1, 2000, 50000000, out);
    assert_true(out[0] > 48000000);

    /* Buckets saturate instead of wrapping. */
    h.buckets[5] = UINT32_MAX;
    log_histogram_add(&h, log_histogram_bucket_low(5));
    assert_int_equal(h.buckets[5], UINT32_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bins_semantics),
        cmocka_unit_test(test_bins_qemu_observed),
        cmocka_unit_test(test_bins_single_boundary),
        cmocka_unit_test(test_bins_reject),
        cmocka_unit_test(test_log_layout),
        cmocka_unit_test(test_log_percentiles_accuracy),
        cmocka_unit_test(test_log_percentiles_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
