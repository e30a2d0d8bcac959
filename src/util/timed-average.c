/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - min/max/average over a sliding time interval (see header). */
#include "util/timed-average.h"

#include <sched.h>
#include <stdbool.h>

static void slot_clear(TimedAverageSlot *s)
{
    atomic_store_explicit(&s->min, UINT64_MAX, memory_order_relaxed);
    atomic_store_explicit(&s->max, 0, memory_order_relaxed);
    atomic_store_explicit(&s->sum, 0, memory_order_relaxed);
    atomic_store_explicit(&s->count, 0, memory_order_relaxed);
}

void timed_average_init(TimedAverage *ta, uint64_t period_ns, int64_t now)
{
    /* The older window holds between P'/2 and P' of history; stretching
     * by 4/3 centres that on the requested period (QEMU does the same). */
    ta->period = period_ns * 4 / 3;
    if (ta->period == 0) {
        ta->period = 1;   /* keeps the modulo below defined */
    }
    atomic_init(&ta->current, 0);
    for (unsigned i = 0; i < 2; i++) {
        TimedAverageWindow *w = &ta->windows[i];
        atomic_init(&w->active, 0);
        slot_clear(&w->slots[0]);
        slot_clear(&w->slots[1]);
    }
    atomic_init(&ta->windows[0].expiration, now + (int64_t)(ta->period / 2));
    atomic_init(&ta->windows[1].expiration, now + (int64_t)ta->period);
}

/* True when this thread emptied window i. */
static bool claim_window(TimedAverage *ta, unsigned i, int64_t now,
                         TimedAverageResetFn *reset, void *opaque)
{
    TimedAverageWindow *w = &ta->windows[i];
    int64_t exp = atomic_load_explicit(&w->expiration, memory_order_acquire);
    /* TIMED_AVERAGE_CLAIMED is never <= now: a reset in progress is
     * skipped, and the value goes into the still-active old slot. */
    if (exp > now ||
        !atomic_compare_exchange_strong_explicit(&w->expiration, &exp,
                                                 TIMED_AVERAGE_CLAIMED,
                                                 memory_order_acq_rel,
                                                 memory_order_relaxed)) {
        return false;
    }
    /* Only we reset this generation.  The spare slot was last written a
     * whole period ago, so emptying it races with no one (see header). */
    unsigned spare = 1 - atomic_load_explicit(&w->active, memory_order_relaxed);
    slot_clear(&w->slots[spare]);
    if (reset) {
        reset(opaque, i, spare);
    }
    atomic_store_explicit(&w->active, spare, memory_order_release);
    /* Keep the window's phase: the next expiration is the first multiple
     * of the period after now, counted from the old one. */
    int64_t period = (int64_t)ta->period;
    int64_t into_period = (now - exp) % period;
    atomic_store_explicit(&w->expiration, now + (period - into_period),
                          memory_order_release);
    return true;
}

/* Expirations of both windows, waiting out a reset another thread is in
 * the middle of (readers only: the I/O path never waits). */
static void stable_expirations(TimedAverage *ta, int64_t exp[2])
{
    for (unsigned i = 0; i < 2; i++) {
        while ((exp[i] = atomic_load_explicit(&ta->windows[i].expiration,
                                              memory_order_acquire)) ==
               TIMED_AVERAGE_CLAIMED) {
            sched_yield();
        }
    }
}

unsigned timed_average_expire_cb(TimedAverage *ta, int64_t now,
                                 TimedAverageResetFn *reset, void *opaque)
{
    unsigned emptied = 0;
    for (unsigned i = 0; i < 2; i++) {
        if (claim_window(ta, i, now, reset, opaque)) {
            emptied |= 1u << i;
        }
    }
    int64_t e0 = atomic_load_explicit(&ta->windows[0].expiration,
                                      memory_order_relaxed);
    int64_t e1 = atomic_load_explicit(&ta->windows[1].expiration,
                                      memory_order_relaxed);
    atomic_store_explicit(&ta->current, e0 < e1 ? 0 : 1, memory_order_relaxed);
    return emptied;
}

unsigned timed_average_expire(TimedAverage *ta, int64_t now)
{
    return timed_average_expire_cb(ta, now, NULL, NULL);
}

static void slot_add(TimedAverageSlot *s, uint64_t value)
{
    atomic_fetch_add_explicit(&s->sum, value, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    uint64_t seen = atomic_load_explicit(&s->min, memory_order_relaxed);
    while (value < seen &&
           !atomic_compare_exchange_weak_explicit(&s->min, &seen, value,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
    seen = atomic_load_explicit(&s->max, memory_order_relaxed);
    while (value > seen &&
           !atomic_compare_exchange_weak_explicit(&s->max, &seen, value,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

static void add_slots(TimedAverage *ta, uint64_t value, unsigned slot[2])
{
    for (unsigned i = 0; i < 2; i++) {
        TimedAverageWindow *w = &ta->windows[i];
        /* Pick the slot once: the whole value goes into one generation. */
        unsigned s = atomic_load_explicit(&w->active, memory_order_acquire);
        slot_add(&w->slots[s], value);
        if (slot) {
            slot[i] = s;
        }
    }
}

void timed_average_add(TimedAverage *ta, uint64_t value)
{
    add_slots(ta, value, NULL);
}

unsigned timed_average_account_cb(TimedAverage *ta, uint64_t value,
                                  int64_t now, TimedAverageResetFn *reset,
                                  void *opaque, unsigned slot[2])
{
    /* Per request on every node: most calls expire nothing, and then
     * expire would change nothing (current included). */
    unsigned emptied = 0;
    if (atomic_load_explicit(&ta->windows[0].expiration,
                             memory_order_relaxed) <= now ||
        atomic_load_explicit(&ta->windows[1].expiration,
                             memory_order_relaxed) <= now) {
        emptied = timed_average_expire_cb(ta, now, reset, opaque);
    }
    add_slots(ta, value, slot);
    return emptied;
}

unsigned timed_average_account(TimedAverage *ta, uint64_t value, int64_t now)
{
    return timed_average_account_cb(ta, value, now, NULL, NULL, NULL);
}

void timed_average_snapshot(TimedAverage *ta, int64_t now,
                            TimedAverageResetFn *reset, void *opaque,
                            TimedAverageSnapshot *out)
{
    timed_average_expire_cb(ta, now, reset, opaque);
    int64_t exp[2];
    stable_expirations(ta, exp);
    unsigned cur = exp[0] < exp[1] ? 0 : 1;
    const TimedAverageWindow *w = &ta->windows[cur];
    unsigned s = atomic_load_explicit(&w->active, memory_order_acquire);
    const TimedAverageSlot *sl = &w->slots[s];

    out->window = cur;
    out->slot = s;
    out->count = atomic_load_explicit(&sl->count, memory_order_relaxed);
    out->sum = atomic_load_explicit(&sl->sum, memory_order_relaxed);
    uint64_t min = atomic_load_explicit(&sl->min, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&sl->max, memory_order_relaxed);
    /* A value being added may show in count before min (or the reverse):
     * an empty-looking min/max reads as 0, as for an empty window. */
    out->min = out->count && min != UINT64_MAX ? min : 0;
    out->max = out->count ? max : 0;
    if (out->max < out->min) {
        /* The value that set min has not reached max yet; it is the
         * largest the window has seen until then. */
        out->max = out->min;
    }
    out->avg = out->count ? out->sum / out->count : 0;
    /* Another reader with a later clock may have moved the expiration
     * past ours: then report the shortest span the window can have. */
    uint64_t left = exp[cur] > now ? (uint64_t)(exp[cur] - now) : 0;
    out->elapsed = left < ta->period ? ta->period - left : ta->period / 2;
    if (out->elapsed == 0) {
        out->elapsed = 1;
    }
}

uint64_t timed_average_min(TimedAverage *ta, int64_t now)
{
    TimedAverageSnapshot s;
    timed_average_snapshot(ta, now, NULL, NULL, &s);
    return s.min;
}

uint64_t timed_average_max(TimedAverage *ta, int64_t now)
{
    TimedAverageSnapshot s;
    timed_average_snapshot(ta, now, NULL, NULL, &s);
    return s.max;
}

uint64_t timed_average_avg(TimedAverage *ta, int64_t now)
{
    TimedAverageSnapshot s;
    timed_average_snapshot(ta, now, NULL, NULL, &s);
    return s.avg;
}

uint64_t timed_average_sum(TimedAverage *ta, int64_t now, uint64_t *elapsed)
{
    TimedAverageSnapshot s;
    timed_average_snapshot(ta, now, NULL, NULL, &s);
    if (elapsed) {
        *elapsed = s.elapsed;
    }
    return s.sum;
}
