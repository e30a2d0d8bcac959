/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - block I/O accounting (QEMU's BlockAcctStats, plus percentiles).
 *
 * One BlockAcct counts the requests seen at one place: an export (what the
 * client sees) or a node (what it costs underneath).  The rules are those
 * of QEMU's block/accounting.c, which query-blockstats reports:
 *
 *  - done:    bytes and ops grow; latency goes into total_time_ns, the
 *             timed windows and the histograms; last access time is set.
 *  - failed:  failed_ops grows (never bytes or ops); the QEMU latency
 *             histogram (block-latency-histogram-set) always counts it;
 *             total_time_ns, last access and the timed windows (and our
 *             percentile and Prometheus histograms) only if account_failed.
 *  - invalid: (rejected before any I/O) invalid_ops grows; last access is
 *             set only if account_invalid; no latency anywhere.
 *  - merged:  merged_ops grows by the number of requests folded into
 *             another (0 unless the caller merges).
 *
 * Write-zeroes is accounted as BLOCK_ACCT_WRITE with its byte count, as
 * QEMU's virtio-blk (VIRTIO_BLK_T_WRITE_ZEROES) and scsi-disk (WRITE SAME)
 * do; discard is BLOCK_ACCT_UNMAP.
 *
 * Concurrency: every function may be called from any thread, and the I/O
 * path (start/done/failed/invalid/merge_done) takes no lock.  Counters,
 * in-flight gauges and all histogram buckets are relaxed atomics; the
 * timed windows roll over by a CAS on their expiration (see
 * util/timed-average.h for what a completion racing with a rollover may
 * see); the QEMU histogram is an atomic pointer swapped by
 * block_acct_set_latency_histogram, the replaced ones kept until
 * block_acct_free so a delayed completion never counts into freed
 * memory.  Readers never stop writers: a query sees each counter
 * exactly, not all of them at one instant.
 */
#ifndef STRATA_BLOCK_ACCOUNTING_H
#define STRATA_BLOCK_ACCOUNTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/block.h"
#include "util/error.h"
#include "util/histogram.h"

typedef enum BlockAcctType {
    BLOCK_ACCT_NONE = 0,   /* a cookie already accounted (or never started) */
    BLOCK_ACCT_READ,
    BLOCK_ACCT_WRITE,      /* write and write-zeroes */
    BLOCK_ACCT_FLUSH,
    BLOCK_ACCT_UNMAP,      /* discard */
    BLOCK_ACCT__MAX,
} BlockAcctType;

/* How a generic request is counted: write-zeroes as a write, discard as
 * unmap; cache and block status are not counted (NONE). */
BlockAcctType block_req_acct_type(BlockReqType type);

/* "read", "write", "flush", "unmap" (Prometheus op label); NULL for NONE. */
const char *block_acct_type_name(BlockAcctType type);

typedef struct BlockAcct BlockAcct;

/* Lives on the stack of the request between start and done/failed. */
typedef struct BlockAcctCookie {
    int64_t start_ns;
    uint64_t bytes;
    BlockAcctType type;
    BlockOrigin origin;
} BlockAcctCookie;

/* Monotonic nanoseconds.  Injectable so tests control time. */
typedef int64_t BlockAcctClock(void *opaque);

typedef struct BlockAcctOptions {
    bool account_invalid;       /* default true (QEMU's default) */
    bool account_failed;        /* default true */
    const uint32_t *intervals;  /* timed_stats interval lengths, seconds */
    size_t n_intervals;
    /* Per-window log histograms for p50/p90/p99/p99.9 (default true).
     * Off only to measure what they cost. */
    bool latency_percentiles;
    BlockAcctClock *clock;      /* NULL: CLOCK_MONOTONIC */
    void *clock_opaque;
} BlockAcctOptions;

/* The daemon default intervals: 1, 60 and 3600 seconds. */
extern const uint32_t block_acct_default_intervals[3];

/* Fills o with the defaults (both switches on, the default intervals,
 * percentiles on, the monotonic clock). */
void block_acct_options_init(BlockAcctOptions *o);

/* True when the environment variable STRATA_X_NO_ACCOUNTING is set to
 * anything but "" or "0": nodes and exports then keep no BlockAcct at
 * all.  Exists only so bench/acct-overhead can measure what accounting
 * costs; read once per process. */
bool block_acct_benchmark_off(void);

/* Fails if an interval is 0 ("Invalid interval length: 0", as QEMU). */
BlockAcct *block_acct_new(const BlockAcctOptions *o, Error **errp);

/* No request may be between start and done when this is called. */
void block_acct_free(BlockAcct *acct);

/* The I/O path.  start records the time and counts the request in flight;
 * exactly one of done/failed ends it (a second call is ignored). */
void block_acct_start(BlockAcct *acct, BlockAcctCookie *cookie,
                      BlockAcctType type, uint64_t bytes);
/* start for a request of a given origin: the per-origin counters (see
 * block_acct_get_origin_stats) count it too. */
void block_acct_start_origin(BlockAcct *acct, BlockAcctCookie *cookie,
                             BlockAcctType type, uint64_t bytes,
                             BlockOrigin origin);
void block_acct_done(BlockAcct *acct, BlockAcctCookie *cookie);
void block_acct_failed(BlockAcct *acct, BlockAcctCookie *cookie);
void block_acct_invalid(BlockAcct *acct, BlockAcctType type);
void block_acct_merge_done(BlockAcct *acct, BlockAcctType type,
                           uint64_t num_requests);

void block_acct_set_account_invalid(BlockAcct *acct, bool on);
void block_acct_set_account_failed(BlockAcct *acct, bool on);

/* QEMU's block-latency-histogram-set for one type: installs lb (ownership
 * passes to acct; NULL removes the histogram) and frees the previous one.
 * Build lb with latency_bins_new(), which validates the boundaries, so a
 * command can check every list before changing anything. */
void block_acct_set_latency_histogram(BlockAcct *acct, BlockAcctType type,
                                      LatencyBins *lb);
/* Removes the histograms of every type (the command with only an id). */
void block_acct_clear_latency_histograms(BlockAcct *acct);

/* ---- reading ---- */

typedef struct BlockAcctOpStats {
    uint64_t bytes;
    uint64_t ops;
    uint64_t failed_ops;
    uint64_t invalid_ops;
    uint64_t merged_ops;
    uint64_t total_time_ns;
    uint64_t in_flight;         /* started and not yet done/failed */
} BlockAcctOpStats;

typedef struct BlockAcctStats {
    BlockAcctOpStats op[BLOCK_ACCT__MAX];   /* [BLOCK_ACCT_NONE] unused */
    bool has_idle_time;          /* false before the first accounted access */
    uint64_t idle_time_ns;
    bool account_invalid;
    bool account_failed;
} BlockAcctStats;

void block_acct_get_stats(BlockAcct *acct, BlockAcctStats *out);

/* Percentiles kept per window: p50, p90, p99, p99.9. */
#define BLOCK_ACCT_NPERCENTILES 4
extern const uint32_t block_acct_percentile_ppm[BLOCK_ACCT_NPERCENTILES];

typedef struct BlockAcctTimedOp {
    uint64_t count;              /* latencies in the window */
    uint64_t min_ns, max_ns, avg_ns;
    double avg_queue_depth;      /* sum of latencies / time covered */
    uint64_t percentile_ns[BLOCK_ACCT_NPERCENTILES];  /* 0 if disabled */
} BlockAcctTimedOp;

typedef struct BlockAcctTimedStats {
    uint32_t interval_length;    /* seconds, as configured */
    BlockAcctTimedOp op[BLOCK_ACCT__MAX];
} BlockAcctTimedStats;

/* The part of the counters above that requests of one origin made:
 * bytes, ops, failed_ops and total_time_ns (the other members are 0).
 * Kept for every BlockAcct at the cost of a few relaxed atomics per
 * request; the origins of the requests an export counts are all
 * BLOCK_ORIGIN_CLIENT. */
void block_acct_get_origin_stats(BlockAcct *acct, BlockOrigin origin,
                                 BlockAcctOpStats out[BLOCK_ACCT__MAX]);

size_t block_acct_interval_count(const BlockAcct *acct);
/* i < block_acct_interval_count(), in configuration order. */
void block_acct_get_timed_stats(BlockAcct *acct, size_t i,
                                BlockAcctTimedStats *out);

/* Always-on latency buckets for Prometheus: a latency of v ns lands in
 * the first bucket whose upper bound (inclusive, as Prometheus' "le") is
 * >= v; the last bucket is +Inf.  Same counting rule as total_time_ns. */
size_t block_acct_prometheus_bounds(const uint64_t **bounds_ns);
/* out gets block_acct_prometheus_bounds() + 1 non-cumulative counts. */
void block_acct_get_latency_buckets(BlockAcct *acct, BlockAcctType type,
                                    uint64_t *out);

/* Whether the timed windows keep percentiles (BlockAcctOptions). */
bool block_acct_percentiles_enabled(const BlockAcct *acct);

/* A copy of the QEMU latency histogram of one type
 * (block-latency-histogram-set): nboundaries boundaries and
 * nboundaries + 1 bins. */
typedef struct BlockAcctHistogram {
    uint64_t *boundaries;
    uint64_t *bins;
    size_t nboundaries;
} BlockAcctHistogram;
/* False (and *out empty) when no histogram is set for type. */
bool block_acct_get_latency_histogram(BlockAcct *acct, BlockAcctType type,
                                      BlockAcctHistogram *out);
void block_acct_histogram_free(BlockAcctHistogram *h);

#endif
