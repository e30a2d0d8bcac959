/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - min/max/average of values over a sliding time interval.
 *
 * Same semantics as QEMU's TimedAverage (util/timed-average.c), which
 * query-blockstats' timed_stats are defined by:
 *
 *  - The requested period P is stretched to P' = P * 4 / 3.
 *  - Two windows of length P' run offset by P'/2; a value goes into both.
 *  - A query reads the older window, so it always covers between P'/2
 *    and P' (that is [2/3 P, 4/3 P)) of history.
 *  - An expired window is emptied and its next expiration keeps the
 *    phase it was started with, however long nothing happened.
 *
 * Time is passed in by the caller (nanoseconds of a monotonic clock), so
 * tests roll windows over without sleeping.
 *
 * Lock-free: any number of threads may add and read at once.  Each window
 * has two slots (generations); values go into the window's active slot
 * with atomic add (sum, count) and CAS loops (min, max).  The thread that
 * sees a window expired claims it by a CAS of its expiration to
 * TIMED_AVERAGE_CLAIMED, empties the spare slot, makes it the active one
 * and publishes the next expiration.  What we guarantee (QEMU takes a
 * lock here instead):
 *  - exactly one thread empties a given generation;
 *  - a value added while that happens lands wholly in the old or wholly
 *    in the new generation (it picks the slot once), never torn between
 *    them and never lost by a half-done reset;
 *  - a reader may see a value's sum before its count (or min/max): the
 *    four members of a slot are not one atomic snapshot.
 * The one case outside this: a thread stalled for a whole period P'
 * between picking its slot and adding to it writes into a slot that has
 * been recycled since, so its value counts in that later generation.
 */
#ifndef STRATA_UTIL_TIMED_AVERAGE_H
#define STRATA_UTIL_TIMED_AVERAGE_H

#include <stdatomic.h>
#include <stdint.h>

/* Expiration of a window whose reset is in progress: never "expired". */
#define TIMED_AVERAGE_CLAIMED INT64_MAX

typedef struct TimedAverageSlot {
    _Atomic uint64_t min;         /* UINT64_MAX while empty */
    _Atomic uint64_t max;
    _Atomic uint64_t sum;
    _Atomic uint64_t count;
} TimedAverageSlot;

typedef struct TimedAverageWindow {
    _Atomic int64_t expiration;   /* ns; emptied at this time */
    _Atomic unsigned active;      /* slot receiving values (0 or 1) */
    TimedAverageSlot slots[2];
} TimedAverageWindow;

typedef struct TimedAverage {
    uint64_t period;              /* stretched period P', ns */
    _Atomic unsigned current;     /* older window at the last expire */
    TimedAverageWindow windows[2];
} TimedAverage;

/* Called by the thread that empties slot `slot` of window `window`, before
 * that slot receives values, so a caller keeping per-slot data (the
 * percentile histograms) can empty it too. */
typedef void TimedAverageResetFn(void *opaque, unsigned window, unsigned slot);

/* period_ns is the requested interval P (> 0); now is the start time. */
void timed_average_init(TimedAverage *ta, uint64_t period_ns, int64_t now);

/* Empties the windows that have expired at now and selects the older
 * window.  Returns a bit mask of the windows this call emptied (bit i =
 * windows[i]). */
unsigned timed_average_expire(TimedAverage *ta, int64_t now);
unsigned timed_average_expire_cb(TimedAverage *ta, int64_t now,
                                 TimedAverageResetFn *reset, void *opaque);

/* Adds value to both windows.  Call timed_average_expire(ta, now) first
 * (timed_average_account does both). */
void timed_average_add(TimedAverage *ta, uint64_t value);

/* expire + add; returns the mask of emptied windows. */
unsigned timed_average_account(TimedAverage *ta, uint64_t value, int64_t now);
/* The same with a reset callback; slot[i] gets the slot of windows[i]
 * the value went into. */
unsigned timed_average_account_cb(TimedAverage *ta, uint64_t value,
                                  int64_t now, TimedAverageResetFn *reset,
                                  void *opaque, unsigned slot[2]);

/* The older window at now, read without stopping writers. */
typedef struct TimedAverageSnapshot {
    uint64_t min, max, avg;       /* 0 when empty */
    uint64_t sum, count;
    uint64_t elapsed;             /* ns the window has collected, > 0 */
    unsigned window, slot;        /* where it was read */
} TimedAverageSnapshot;

void timed_average_snapshot(TimedAverage *ta, int64_t now,
                            TimedAverageResetFn *reset, void *opaque,
                            TimedAverageSnapshot *out);

/* Readers: expire at now, then read the older window.  An empty window
 * reads as 0 for min, max and avg. */
uint64_t timed_average_min(TimedAverage *ta, int64_t now);
uint64_t timed_average_max(TimedAverage *ta, int64_t now);
uint64_t timed_average_avg(TimedAverage *ta, int64_t now);
/* Sum of the values in the older window; *elapsed (if not NULL) gets how
 * long that window has been collecting, in ns (always >= P'/2 > 0). */
uint64_t timed_average_sum(TimedAverage *ta, int64_t now, uint64_t *elapsed);

#endif
