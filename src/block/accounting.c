/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - block I/O accounting (see accounting.h for the rules). */
#include "block/accounting.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/cleanup.h"
#include "util/timed-average.h"

#define NS_PER_SEC INT64_C(1000000000)

const uint32_t block_acct_default_intervals[3] = { 1, 60, 3600 };
const uint32_t block_acct_percentile_ppm[BLOCK_ACCT_NPERCENTILES] = {
    500000, 900000, 990000, 999000,
};

/* Prometheus "le" bounds: what latency dashboards use, 10 us .. 10 s. */
static const uint64_t prometheus_bounds_ns[] = {
    10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
    100000000, 250000000, 500000000,
    1000000000, 2500000000, 5000000000, 10000000000,
};
#define N_PROM_BOUNDS (sizeof(prometheus_bounds_ns) / sizeof(prometheus_bounds_ns[0]))

/* Percentile histograms of one timed interval: one per slot of each of
 * the two windows, so they are emptied with their slot (see
 * timed-average.h for the rollover protocol). */
#define HISTS_PER_INTERVAL 4
static size_t hist_index(unsigned window, unsigned slot)
{
    return 2 * window + slot;
}

typedef struct AcctOp {
    _Atomic uint64_t bytes;
    _Atomic uint64_t ops;
    _Atomic uint64_t failed;
    _Atomic uint64_t invalid;
    _Atomic uint64_t merged;
    _Atomic uint64_t total_time_ns;
    _Atomic uint64_t in_flight;
    LatencyBins *prom;          /* fixed bounds, lock-free counting */

    /* block-latency-histogram-set: swapped atomically by the control
     * path.  Replaced histograms are kept until the accounting object is
     * freed (when no request can be in flight), so a completion that
     * loaded the pointer just before a swap always counts into live
     * memory, however long it is delayed.  They are small and sets are
     * rare, so keeping them costs little. */
    _Atomic(LatencyBins *) user_hist;
    LatencyBins **retired_hist; /* under BlockAcct.control_lock */
    size_t n_retired;
    TimedAverage *win;          /* [acct->n_intervals] */
    /* HISTS_PER_INTERVAL per interval; NULL until the first latency so
     * idle types cost nothing. */
    _Atomic(LogHistogram *) hists;
} __attribute__((aligned(64))) AcctOp;

/* Per origin: the sums a rate controller needs (see accounting.h). */
typedef struct AcctOriginOp {
    atomic_uint_fast64_t bytes;
    atomic_uint_fast64_t ops;
    atomic_uint_fast64_t failed;
    atomic_uint_fast64_t total_time_ns;
} AcctOriginOp;

struct BlockAcct {
    AcctOp op[BLOCK_ACCT__MAX];
    AcctOriginOp origin[BLOCK_ORIGIN__MAX][BLOCK_ACCT__MAX];
    _Atomic int64_t last_access_ns;     /* INT64_MIN: never */
    atomic_bool account_invalid;
    atomic_bool account_failed;
    bool percentiles;
    size_t n_intervals;
    uint32_t *intervals;
    BlockAcctClock *clock;
    void *clock_opaque;
    /* Serialises histogram-set and the query that reads the user
     * histograms; never taken on the I/O path. */
    pthread_mutex_t control_lock;
};

static const char *const type_names[BLOCK_ACCT__MAX] = {
    [BLOCK_ACCT_READ] = "read",
    [BLOCK_ACCT_WRITE] = "write",
    [BLOCK_ACCT_FLUSH] = "flush",
    [BLOCK_ACCT_UNMAP] = "unmap",
};

const char *block_acct_type_name(BlockAcctType type)
{
    return type > BLOCK_ACCT_NONE && type < BLOCK_ACCT__MAX ? type_names[type]
                                                            : NULL;
}

static bool type_valid(BlockAcctType type)
{
    return type > BLOCK_ACCT_NONE && type < BLOCK_ACCT__MAX;
}

static int64_t monotonic_ns(void *opaque)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static int64_t acct_now(const BlockAcct *acct)
{
    return acct->clock(acct->clock_opaque);
}

void block_acct_options_init(BlockAcctOptions *o)
{
    *o = (BlockAcctOptions){
        .account_invalid = true,
        .account_failed = true,
        .intervals = block_acct_default_intervals,
        .n_intervals = 3,
        .latency_percentiles = true,
    };
}

bool block_acct_benchmark_off(void)
{
    static int off = -1;
    int v = __atomic_load_n(&off, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("STRATA_X_NO_ACCOUNTING");
        v = e && *e && strcmp(e, "0") != 0;
        __atomic_store_n(&off, v, __ATOMIC_RELAXED);
    }
    return v;
}

BlockAcct *block_acct_new(const BlockAcctOptions *o, Error **errp)
{
    for (size_t i = 0; i < o->n_intervals; i++) {
        if (o->intervals[i] == 0) {
            error_setg(errp, "Invalid interval length: %u", o->intervals[i]);
            return NULL;
        }
    }

    BlockAcct *acct = calloc(1, sizeof(*acct));
    if (!acct) {
        error_setg(errp, "out of memory for I/O accounting");
        return NULL;
    }
    acct->clock = o->clock ? o->clock : monotonic_ns;
    acct->clock_opaque = o->clock_opaque;
    acct->percentiles = o->latency_percentiles;
    pthread_mutex_init(&acct->control_lock, NULL);
    atomic_init(&acct->last_access_ns, INT64_MIN);
    atomic_init(&acct->account_invalid, o->account_invalid);
    atomic_init(&acct->account_failed, o->account_failed);
    acct->n_intervals = o->n_intervals;
    if (o->n_intervals) {
        acct->intervals = malloc(o->n_intervals * sizeof(uint32_t));
        if (!acct->intervals) {
            goto oom;
        }
        memcpy(acct->intervals, o->intervals, o->n_intervals * sizeof(uint32_t));
    }

    int64_t now = acct_now(acct);
    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        AcctOp *op = &acct->op[t];
        /* Bins are [b(i-1), b(i)); bound + 1 makes them Prometheus'
         * inclusive "le" for integer nanoseconds. */
        uint64_t b[N_PROM_BOUNDS];
        for (size_t i = 0; i < N_PROM_BOUNDS; i++) {
            b[i] = prometheus_bounds_ns[i] + 1;
        }
        op->prom = latency_bins_new(b, N_PROM_BOUNDS, NULL);
        if (!op->prom) {
            goto oom;
        }
        if (acct->n_intervals) {
            op->win = calloc(acct->n_intervals, sizeof(*op->win));
            if (!op->win) {
                goto oom;
            }
        }
        for (size_t i = 0; i < acct->n_intervals; i++) {
            timed_average_init(&op->win[i],
                               (uint64_t)acct->intervals[i] * NS_PER_SEC, now);
        }
    }
    return acct;

oom:
    block_acct_free(acct);
    error_setg(errp, "out of memory for I/O accounting");
    return NULL;
}


void block_acct_free(BlockAcct *acct)
{
    if (!acct) {
        return;
    }
    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        AcctOp *op = &acct->op[t];
        latency_bins_free(op->prom);
        latency_bins_free(atomic_load(&op->user_hist));
        for (size_t i = 0; i < op->n_retired; i++) {
            latency_bins_free(op->retired_hist[i]);
        }
        free(op->retired_hist);
        free(atomic_load(&op->hists));
        free(op->win);
    }
    pthread_mutex_destroy(&acct->control_lock);
    free(acct->intervals);
    free(acct);
}

void block_acct_set_account_invalid(BlockAcct *acct, bool on)
{
    atomic_store_explicit(&acct->account_invalid, on, memory_order_relaxed);
}

void block_acct_set_account_failed(BlockAcct *acct, bool on)
{
    atomic_store_explicit(&acct->account_failed, on, memory_order_relaxed);
}

static void touch_last_access(BlockAcct *acct, int64_t now)
{
    /* Completions race; keep the latest time, not the last writer's. */
    int64_t seen = atomic_load_explicit(&acct->last_access_ns,
                                        memory_order_relaxed);
    while (seen < now &&
           !atomic_compare_exchange_weak_explicit(&acct->last_access_ns, &seen,
                                                  now, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

BlockAcctType block_req_acct_type(BlockReqType type)
{
    switch (type) {
    case BLOCK_REQ_READ:
        return BLOCK_ACCT_READ;
    case BLOCK_REQ_WRITE:
    case BLOCK_REQ_WRITE_ZEROES:
        return BLOCK_ACCT_WRITE;
    case BLOCK_REQ_DISCARD:
        return BLOCK_ACCT_UNMAP;
    case BLOCK_REQ_FLUSH:
        return BLOCK_ACCT_FLUSH;
    case BLOCK_REQ_CACHE:
    case BLOCK_REQ_STATUS:
    case BLOCK_REQ__MAX:
        break;
    }
    return BLOCK_ACCT_NONE;
}

void block_acct_start(BlockAcct *acct, BlockAcctCookie *cookie,
                      BlockAcctType type, uint64_t bytes)
{
    block_acct_start_origin(acct, cookie, type, bytes, BLOCK_ORIGIN_CLIENT);
}

void block_acct_start_origin(BlockAcct *acct, BlockAcctCookie *cookie,
                             BlockAcctType type, uint64_t bytes,
                             BlockOrigin origin)
{
    if (!type_valid(type)) {
        cookie->type = BLOCK_ACCT_NONE;
        return;
    }
    cookie->origin = origin < BLOCK_ORIGIN__MAX ? origin : BLOCK_ORIGIN_CLIENT;
    cookie->type = type;
    cookie->bytes = bytes;
    cookie->start_ns = acct_now(acct);
    atomic_fetch_add_explicit(&acct->op[type].in_flight, 1,
                              memory_order_relaxed);
}

/* A window slot is being emptied: empty its percentile histogram too,
 * before the slot becomes active again. */
typedef struct HistReset {
    LogHistogram *interval_hists;   /* HISTS_PER_INTERVAL, or NULL */
} HistReset;

static void reset_hist(void *opaque, unsigned window, unsigned slot)
{
    HistReset *r = opaque;
    if (r->interval_hists) {
        log_histogram_clear(&r->interval_hists[hist_index(window, slot)]);
    }
}

/* The percentile histograms of op, allocated by the first latency (the
 * thread that loses the race frees its copy). */
static LogHistogram *op_hists(const BlockAcct *acct, AcctOp *op)
{
    LogHistogram *h = atomic_load_explicit(&op->hists, memory_order_acquire);
    if (h || !acct->percentiles || !acct->n_intervals) {
        return h;
    }
    LogHistogram *fresh = calloc(acct->n_intervals * HISTS_PER_INTERVAL,
                                 sizeof(LogHistogram));
    if (!fresh) {
        return NULL;   /* percentiles stay empty; the windows still count */
    }
    if (atomic_compare_exchange_strong_explicit(&op->hists, &h, fresh,
                                                memory_order_acq_rel,
                                                memory_order_acquire)) {
        return fresh;
    }
    free(fresh);
    return h;
}

/* Windows and percentile histograms, lock-free. */
static void account_windows(BlockAcct *acct, AcctOp *op, uint64_t latency,
                            int64_t now)
{
    LogHistogram *hists = op_hists(acct, op);
    /* Every window's histograms count the same latency: find its
     * bucket once (this runs per request on every node). */
    size_t bucket = log_histogram_index(latency);
    for (size_t i = 0; i < acct->n_intervals; i++) {
        HistReset r = {
            .interval_hists = hists ? hists + HISTS_PER_INTERVAL * i : NULL,
        };
        unsigned slot[2];
        timed_average_account_cb(&op->win[i], latency, now, reset_hist, &r,
                                 slot);
        if (r.interval_hists) {
            for (unsigned k = 0; k < 2; k++) {
                log_histogram_add_at(&r.interval_hists[hist_index(k, slot[k])],
                                     bucket);
            }
        }
    }
}

static void account_one(BlockAcct *acct, BlockAcctCookie *cookie, bool failed)
{
    BlockAcctType type = cookie->type;
    if (!type_valid(type)) {
        return;   /* already accounted */
    }
    cookie->type = BLOCK_ACCT_NONE;

    AcctOp *op = &acct->op[type];
    int64_t now = acct_now(acct);
    uint64_t latency = now > cookie->start_ns ? (uint64_t)(now - cookie->start_ns)
                                              : 0;
    bool timed = !failed || atomic_load_explicit(&acct->account_failed,
                                                 memory_order_relaxed);

    AcctOriginOp *oop = &acct->origin[cookie->origin][type];
    atomic_fetch_sub_explicit(&op->in_flight, 1, memory_order_relaxed);
    if (failed) {
        atomic_fetch_add_explicit(&op->failed, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&oop->failed, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&op->bytes, cookie->bytes,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&op->ops, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&oop->bytes, cookie->bytes,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&oop->ops, 1, memory_order_relaxed);
    }
    if (timed) {
        atomic_fetch_add_explicit(&op->total_time_ns, latency,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&oop->total_time_ns, latency,
                                  memory_order_relaxed);
        touch_last_access(acct, now);
        latency_bins_add(op->prom, latency);
    }

    LatencyBins *user = atomic_load_explicit(&op->user_hist,
                                             memory_order_acquire);
    if (user) {
        latency_bins_add(user, latency);
    }
    if (timed) {
        account_windows(acct, op, latency, now);
    }
}

void block_acct_done(BlockAcct *acct, BlockAcctCookie *cookie)
{
    account_one(acct, cookie, false);
}

void block_acct_failed(BlockAcct *acct, BlockAcctCookie *cookie)
{
    account_one(acct, cookie, true);
}

void block_acct_invalid(BlockAcct *acct, BlockAcctType type)
{
    if (!type_valid(type)) {
        return;
    }
    /* Rejected before any I/O: no latency to account, ever. */
    atomic_fetch_add_explicit(&acct->op[type].invalid, 1, memory_order_relaxed);
    if (atomic_load_explicit(&acct->account_invalid, memory_order_relaxed)) {
        touch_last_access(acct, acct_now(acct));
    }
}

void block_acct_merge_done(BlockAcct *acct, BlockAcctType type,
                           uint64_t num_requests)
{
    if (type_valid(type)) {
        atomic_fetch_add_explicit(&acct->op[type].merged, num_requests,
                                  memory_order_relaxed);
    }
}

void block_acct_set_latency_histogram(BlockAcct *acct, BlockAcctType type,
                                      LatencyBins *lb)
{
    if (!type_valid(type)) {
        latency_bins_free(lb);
        return;
    }
    AcctOp *op = &acct->op[type];
    pthread_mutex_lock(&acct->control_lock);
    LatencyBins **grown = realloc(op->retired_hist,
                                  (op->n_retired + 1) * sizeof(*grown));
    if (!grown) {
        /* Without room to retire the old one safely, keep it in place. */
        pthread_mutex_unlock(&acct->control_lock);
        latency_bins_free(lb);
        return;
    }
    op->retired_hist = grown;
    LatencyBins *old = atomic_exchange_explicit(&op->user_hist, lb,
                                                memory_order_acq_rel);
    if (old) {
        op->retired_hist[op->n_retired++] = old;
    }
    pthread_mutex_unlock(&acct->control_lock);
}

void block_acct_clear_latency_histograms(BlockAcct *acct)
{
    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        block_acct_set_latency_histogram(acct, (BlockAcctType)t, NULL);
    }
}

/* ---- reading ---- */

void block_acct_get_stats(BlockAcct *acct, BlockAcctStats *out)
{
    memset(out, 0, sizeof(*out));
    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        AcctOp *op = &acct->op[t];
        BlockAcctOpStats *s = &out->op[t];
        s->bytes = atomic_load_explicit(&op->bytes, memory_order_relaxed);
        s->ops = atomic_load_explicit(&op->ops, memory_order_relaxed);
        s->failed_ops = atomic_load_explicit(&op->failed, memory_order_relaxed);
        s->invalid_ops = atomic_load_explicit(&op->invalid, memory_order_relaxed);
        s->merged_ops = atomic_load_explicit(&op->merged, memory_order_relaxed);
        s->total_time_ns = atomic_load_explicit(&op->total_time_ns,
                                                memory_order_relaxed);
        s->in_flight = atomic_load_explicit(&op->in_flight, memory_order_relaxed);
    }
    int64_t last = atomic_load_explicit(&acct->last_access_ns,
                                        memory_order_relaxed);
    if (last != INT64_MIN) {
        int64_t now = acct_now(acct);
        out->has_idle_time = true;
        out->idle_time_ns = now > last ? (uint64_t)(now - last) : 0;
    }
    out->account_invalid = atomic_load_explicit(&acct->account_invalid,
                                                memory_order_relaxed);
    out->account_failed = atomic_load_explicit(&acct->account_failed,
                                               memory_order_relaxed);
}

void block_acct_get_origin_stats(BlockAcct *acct, BlockOrigin origin,
                                 BlockAcctOpStats out[BLOCK_ACCT__MAX])
{
    memset(out, 0, sizeof(BlockAcctOpStats) * BLOCK_ACCT__MAX);
    if (origin >= BLOCK_ORIGIN__MAX) {
        return;
    }
    for (int t = BLOCK_ACCT_NONE + 1; t < BLOCK_ACCT__MAX; t++) {
        AcctOriginOp *o = &acct->origin[origin][t];
        out[t].bytes = atomic_load_explicit(&o->bytes, memory_order_relaxed);
        out[t].ops = atomic_load_explicit(&o->ops, memory_order_relaxed);
        out[t].failed_ops = atomic_load_explicit(&o->failed,
                                                 memory_order_relaxed);
        out[t].total_time_ns = atomic_load_explicit(&o->total_time_ns,
                                                    memory_order_relaxed);
    }
}

size_t block_acct_interval_count(const BlockAcct *acct)
{
    return acct->n_intervals;
}

void block_acct_get_timed_stats(BlockAcct *acct, size_t i,
                                BlockAcctTimedStats *out)
{
    memset(out, 0, sizeof(*out));
    if (i >= acct->n_intervals) {
        return;
    }
    out->interval_length = acct->intervals[i];
    int64_t now = acct_now(acct);

    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        AcctOp *op = &acct->op[t];
        BlockAcctTimedOp *r = &out->op[t];
        LogHistogram *hists = atomic_load_explicit(&op->hists,
                                                   memory_order_acquire);
        HistReset reset = {
            .interval_hists = hists ? hists + HISTS_PER_INTERVAL * i : NULL,
        };
        TimedAverageSnapshot snap;
        timed_average_snapshot(&op->win[i], now, reset_hist, &reset, &snap);
        r->count = snap.count;
        r->min_ns = snap.min;
        r->max_ns = snap.max;
        r->avg_ns = snap.avg;
        r->avg_queue_depth = (double)snap.sum / (double)snap.elapsed;
        if (reset.interval_hists && r->count) {
            log_histogram_percentiles(
                &reset.interval_hists[hist_index(snap.window, snap.slot)],
                block_acct_percentile_ppm, BLOCK_ACCT_NPERCENTILES,
                r->min_ns, r->max_ns, r->percentile_ns);
        }
    }
}

size_t block_acct_prometheus_bounds(const uint64_t **bounds_ns)
{
    *bounds_ns = prometheus_bounds_ns;
    return N_PROM_BOUNDS;
}

void block_acct_get_latency_buckets(BlockAcct *acct, BlockAcctType type,
                                    uint64_t *out)
{
    if (!type_valid(type)) {
        memset(out, 0, (N_PROM_BOUNDS + 1) * sizeof(*out));
        return;
    }
    latency_bins_read(acct->op[type].prom, out);
}

/* ---- query-blockstats ---- */

bool block_acct_percentiles_enabled(const BlockAcct *acct)
{
    return acct->percentiles;
}

bool block_acct_get_latency_histogram(BlockAcct *acct, BlockAcctType type,
                                      BlockAcctHistogram *out)
{
    memset(out, 0, sizeof(*out));
    if (!type_valid(type)) {
        return false;
    }
    AcctOp *op = &acct->op[type];
    LOCK_GUARD(&acct->control_lock);
    const LatencyBins *lb = atomic_load_explicit(&op->user_hist,
                                                 memory_order_acquire);
    if (!lb) {
        return false;
    }
    out->boundaries = calloc(lb->nboundaries ? lb->nboundaries : 1,
                             sizeof(uint64_t));
    out->bins = calloc(lb->nboundaries + 1, sizeof(uint64_t));
    if (!out->boundaries || !out->bins) {
        block_acct_histogram_free(out);
        return false;
    }
    out->nboundaries = lb->nboundaries;
    for (size_t i = 0; i <= lb->nboundaries; i++) {
        out->bins[i] = atomic_load_explicit(&lb->bins[i], memory_order_relaxed);
        if (i < lb->nboundaries) {
            out->boundaries[i] = lb->boundaries[i];
        }
    }
    return true;
}

void block_acct_histogram_free(BlockAcctHistogram *h)
{
    free(h->boundaries);
    free(h->bins);
    memset(h, 0, sizeof(*h));
}
