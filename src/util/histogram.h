/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - latency histograms.
 *
 * Two kinds:
 *
 * LatencyBins: QEMU's block-latency-histogram semantics.  The user gives
 *   boundaries b0 < b1 < ... < bN-1 (all > 0); there are N+1 bins
 *   [0, b0), [b0, b1), ..., [bN-1, +inf).  Boundaries are fixed for the
 *   life of the object (replace the object to change them).  Counting is
 *   lock-free (relaxed atomic increments), so any number of threads may
 *   add at once; a reader sees each bin exactly, not necessarily all bins
 *   at the same instant.
 *
 * LogHistogram: an always-on log-linear histogram for percentiles, in
 *   nanoseconds.  Each power of two from 2^10 ns (~1 us) to 2^37 ns
 *   (~137 s) is split into 16 equal buckets, plus one bucket below and one
 *   above.  A bucket is at most 6.25% wide, and reporting its midpoint is
 *   within 3.2% of any value in it.  Buckets are 32-bit and saturate (not
 *   wrap): a histogram belongs to a time window that is emptied
 *   regularly.  Adding and reading use relaxed atomic operations, so
 *   writers and readers may run at once (a reader sees each bucket
 *   exactly, not all buckets at the same instant); clearing races with
 *   nothing only if the caller keeps writers off the histogram being
 *   cleared (block/accounting.c clears only the spare slot of a window).
 *   Saturation is checked before the increment, so with k threads adding
 *   to a bucket at UINT32_MAX - k at once it could still wrap: that needs
 *   4 billion latencies in one bucket of one window generation.
 */
#ifndef STRATA_UTIL_HISTOGRAM_H
#define STRATA_UTIL_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct LatencyBins {
    size_t nboundaries;           /* N >= 1 */
    uint64_t *boundaries;         /* N values, strictly increasing, > 0 */
    _Atomic uint64_t *bins;       /* N + 1 counters */
} LatencyBins;

/* Copies the boundaries.  Fails (errp set) when the list is empty, when a
 * value is 0, or when the values are not strictly increasing. */
LatencyBins *latency_bins_new(const uint64_t *boundaries, size_t n,
                              Error **errp);
void latency_bins_free(LatencyBins *lb);
/* Index of the bin value falls into (0 .. nboundaries). */
size_t latency_bins_index(const LatencyBins *lb, uint64_t value);
/* Counts value in its bin; lock-free. */
void latency_bins_add(LatencyBins *lb, uint64_t value);
/* Copies the nboundaries + 1 counters into out. */
void latency_bins_read(const LatencyBins *lb, uint64_t *out);

#define LOG_HISTOGRAM_SUB_BITS 4
#define LOG_HISTOGRAM_MIN_EXP 10      /* first split octave: [2^10, 2^11) ns */
#define LOG_HISTOGRAM_MAX_EXP 37      /* values >= 2^37 ns go in the last bucket */
#define LOG_HISTOGRAM_BUCKETS \
    (2 + (LOG_HISTOGRAM_MAX_EXP - LOG_HISTOGRAM_MIN_EXP) * (1 << LOG_HISTOGRAM_SUB_BITS))

typedef struct LogHistogram {
    uint32_t buckets[LOG_HISTOGRAM_BUCKETS];
} LogHistogram;

void log_histogram_clear(LogHistogram *h);
void log_histogram_add(LogHistogram *h, uint64_t value);
uint64_t log_histogram_count(const LogHistogram *h);
size_t log_histogram_index(uint64_t value);
/* log_histogram_add with the bucket already found by
 * log_histogram_index(): one value counted in several histograms
 * computes its bucket once. */
static inline void log_histogram_add_at(LogHistogram *h, size_t index)
{
    if (__atomic_load_n(&h->buckets[index], __ATOMIC_RELAXED) != UINT32_MAX) {
        __atomic_fetch_add(&h->buckets[index], 1, __ATOMIC_RELAXED);
    }
}
/* Smallest value of bucket i, and one past its largest (UINT64_MAX for
 * the last bucket). */
uint64_t log_histogram_bucket_low(size_t i);
uint64_t log_histogram_bucket_high(size_t i);

/* Nearest-rank percentiles: for each ppm[k] (parts per million: 500000
 * is the median, 999000 is p99.9) out[k] is the midpoint of the bucket
 * holding the value of rank ceil(ppm * count / 1e6), clamped to
 * [lo, hi] (pass the window's exact min and max, or 0 and UINT64_MAX).
 * An empty histogram gives 0 for every percentile. */
void log_histogram_percentiles(const LogHistogram *h, const uint32_t *ppm,
                               size_t n, uint64_t lo, uint64_t hi,
                               uint64_t *out);

#endif
