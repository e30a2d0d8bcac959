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
 * tests roll windows over without sleeping.  Not thread-safe: the caller
 * serialises every call on one TimedAverage (block/accounting.c holds a
 * short per-operation-type spinlock).
 */
#ifndef STRATA_UTIL_TIMED_AVERAGE_H
#define STRATA_UTIL_TIMED_AVERAGE_H

#include <stdint.h>

typedef struct TimedAverageWindow {
    uint64_t min;         /* UINT64_MAX while empty */
    uint64_t max;
    uint64_t sum;
    uint64_t count;
    int64_t expiration;   /* ns; the window is emptied at this time */
} TimedAverageWindow;

typedef struct TimedAverage {
    uint64_t period;      /* stretched period P', ns */
    unsigned current;     /* index of the older window */
    TimedAverageWindow windows[2];
} TimedAverage;

/* period_ns is the requested interval P (> 0); now is the start time. */
void timed_average_init(TimedAverage *ta, uint64_t period_ns, int64_t now);

/* Empties the windows that have expired at now and selects the older
 * window.  Returns a bit mask of the windows that were emptied (bit i =
 * windows[i]) so a caller keeping per-window data can empty it too. */
unsigned timed_average_expire(TimedAverage *ta, int64_t now);

/* Adds value to both windows.  Call timed_average_expire(ta, now) first
 * (timed_average_account does both). */
void timed_average_add(TimedAverage *ta, uint64_t value);

/* expire + add; returns the mask of emptied windows. */
unsigned timed_average_account(TimedAverage *ta, uint64_t value, int64_t now);

/* Readers: expire at now, then read the older window.  An empty window
 * reads as 0 for min, max and avg. */
uint64_t timed_average_min(TimedAverage *ta, int64_t now);
uint64_t timed_average_max(TimedAverage *ta, int64_t now);
uint64_t timed_average_avg(TimedAverage *ta, int64_t now);
/* Sum of the values in the older window; *elapsed (if not NULL) gets how
 * long that window has been collecting, in ns (always >= P'/2 > 0). */
uint64_t timed_average_sum(TimedAverage *ta, int64_t now, uint64_t *elapsed);

#endif
