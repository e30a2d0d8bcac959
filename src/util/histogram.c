/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - latency histograms (see header). */
#include "util/histogram.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

LatencyBins *latency_bins_new(const uint64_t *boundaries, size_t n,
                              Error **errp)
{
    /* QEMU 7.2 accepts an empty list and then crashes on the next I/O;
     * a histogram with one bin says nothing anyway, so refuse it. */
    if (n == 0) {
        error_setg(errp, "latency histogram needs at least one boundary");
        return NULL;
    }
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (boundaries[i] <= prev) {
            if (i == 0) {
                error_setg(errp, "latency histogram boundaries must be "
                           "greater than 0");
            } else {
                error_setg(errp, "latency histogram boundaries must be "
                           "strictly increasing: %" PRIu64 " follows %" PRIu64,
                           boundaries[i], prev);
            }
            return NULL;
        }
        prev = boundaries[i];
    }

    LatencyBins *lb = calloc(1, sizeof(*lb));
    uint64_t *b = malloc(n * sizeof(*b));
    _Atomic uint64_t *bins = calloc(n + 1, sizeof(*bins));
    if (!lb || !b || !bins) {
        free(lb);
        free(b);
        free(bins);
        error_setg(errp, "out of memory for a latency histogram");
        return NULL;
    }
    memcpy(b, boundaries, n * sizeof(*b));
    lb->nboundaries = n;
    lb->boundaries = b;
    lb->bins = bins;
    return lb;
}

void latency_bins_free(LatencyBins *lb)
{
    if (lb) {
        free(lb->boundaries);
        free(lb->bins);
        free(lb);
    }
}

size_t latency_bins_index(const LatencyBins *lb, uint64_t value)
{
    /* Bin i is [b(i-1), b(i)): the answer is the number of boundaries
     * that are <= value. */
    size_t lo = 0, hi = lb->nboundaries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lb->boundaries[mid] <= value) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

void latency_bins_add(LatencyBins *lb, uint64_t value)
{
    atomic_fetch_add_explicit(&lb->bins[latency_bins_index(lb, value)], 1,
                              memory_order_relaxed);
}

void latency_bins_read(const LatencyBins *lb, uint64_t *out)
{
    for (size_t i = 0; i <= lb->nboundaries; i++) {
        out[i] = atomic_load_explicit(&lb->bins[i], memory_order_relaxed);
    }
}

/* ---- log-linear histogram ---- */

#define SUBS (1u << LOG_HISTOGRAM_SUB_BITS)

void log_histogram_clear(LogHistogram *h)
{
    for (size_t i = 0; i < LOG_HISTOGRAM_BUCKETS; i++) {
        __atomic_store_n(&h->buckets[i], 0, __ATOMIC_RELAXED);
    }
}

size_t log_histogram_index(uint64_t value)
{
    if (value < (UINT64_C(1) << LOG_HISTOGRAM_MIN_EXP)) {
        return 0;
    }
    if (value >= (UINT64_C(1) << LOG_HISTOGRAM_MAX_EXP)) {
        return LOG_HISTOGRAM_BUCKETS - 1;
    }
    unsigned e = 63 - (unsigned)__builtin_clzll(value);
    unsigned sub = (unsigned)(value >> (e - LOG_HISTOGRAM_SUB_BITS)) & (SUBS - 1);
    return 1 + (size_t)(e - LOG_HISTOGRAM_MIN_EXP) * SUBS + sub;
}

uint64_t log_histogram_bucket_low(size_t i)
{
    if (i == 0) {
        return 0;
    }
    if (i >= LOG_HISTOGRAM_BUCKETS - 1) {
        return UINT64_C(1) << LOG_HISTOGRAM_MAX_EXP;
    }
    unsigned e = LOG_HISTOGRAM_MIN_EXP + (unsigned)((i - 1) / SUBS);
    uint64_t sub = (i - 1) % SUBS;
    return (SUBS + sub) << (e - LOG_HISTOGRAM_SUB_BITS);
}

uint64_t log_histogram_bucket_high(size_t i)
{
    if (i >= LOG_HISTOGRAM_BUCKETS - 1) {
        return UINT64_MAX;
    }
    return log_histogram_bucket_low(i + 1);
}

void log_histogram_add(LogHistogram *h, uint64_t value)
{
    log_histogram_add_at(h, log_histogram_index(value));
}

uint64_t log_histogram_count(const LogHistogram *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i < LOG_HISTOGRAM_BUCKETS; i++) {
        n += __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
    }
    return n;
}

static uint64_t bucket_representative(size_t i)
{
    if (i >= LOG_HISTOGRAM_BUCKETS - 1) {
        return log_histogram_bucket_low(i);
    }
    uint64_t low = log_histogram_bucket_low(i);
    return low + (log_histogram_bucket_high(i) - low) / 2;
}

void log_histogram_percentiles(const LogHistogram *h, const uint32_t *ppm,
                               size_t n, uint64_t lo, uint64_t hi,
                               uint64_t *out)
{
    /* Writers may be adding: work on one copy so the ranks and the
     * cumulative counts agree. */
    uint32_t b[LOG_HISTOGRAM_BUCKETS];
    uint64_t total = 0;
    for (size_t i = 0; i < LOG_HISTOGRAM_BUCKETS; i++) {
        b[i] = __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
        total += b[i];
    }

    for (size_t k = 0; k < n; k++) {
        if (total == 0) {
            out[k] = 0;
            continue;
        }
        uint32_t p = ppm[k] > 1000000 ? 1000000 : ppm[k];
        /* total < 2^42, so total * 1e6 cannot overflow 64 bits */
        uint64_t rank = (total * p + 999999) / 1000000;
        if (rank == 0) {
            rank = 1;
        }
        uint64_t cum = 0;
        size_t i = 0;
        for (; i < LOG_HISTOGRAM_BUCKETS; i++) {
            cum += b[i];
            if (cum >= rank) {
                break;
            }
        }
        uint64_t v = bucket_representative(i);
        out[k] = v < lo ? lo : v > hi ? hi : v;
    }
}
