/* strata - min/max/average over a sliding time interval (see header). */
#include "util/timed-average.h"

static void window_clear(TimedAverageWindow *w)
{
    w->min = UINT64_MAX;
    w->max = 0;
    w->sum = 0;
    w->count = 0;
}

void timed_average_init(TimedAverage *ta, uint64_t period_ns, int64_t now)
{
    /* The older window holds between P'/2 and P' of history; stretching
     * by 4/3 centres that on the requested period (QEMU does the same). */
    ta->period = period_ns * 4 / 3;
    if (ta->period == 0) {
        ta->period = 1;   /* keeps the modulo below defined */
    }
    ta->current = 0;
    window_clear(&ta->windows[0]);
    window_clear(&ta->windows[1]);
    ta->windows[0].expiration = now + (int64_t)(ta->period / 2);
    ta->windows[1].expiration = now + (int64_t)ta->period;
}

unsigned timed_average_expire(TimedAverage *ta, int64_t now)
{
    unsigned emptied = 0;
    int64_t period = (int64_t)ta->period;

    for (unsigned i = 0; i < 2; i++) {
        TimedAverageWindow *w = &ta->windows[i];
        if (w->expiration <= now) {
            /* Keep the window's phase: the next expiration is the first
             * multiple of the period after now, counted from the old one. */
            int64_t into_period = (now - w->expiration) % period;
            window_clear(w);
            w->expiration = now + (period - into_period);
            emptied |= 1u << i;
        }
    }
    ta->current = ta->windows[0].expiration < ta->windows[1].expiration ? 0 : 1;
    return emptied;
}

void timed_average_add(TimedAverage *ta, uint64_t value)
{
    for (unsigned i = 0; i < 2; i++) {
        TimedAverageWindow *w = &ta->windows[i];
        w->sum += value;
        w->count++;
        if (value < w->min) {
            w->min = value;
        }
        if (value > w->max) {
            w->max = value;
        }
    }
}

unsigned timed_average_account(TimedAverage *ta, uint64_t value, int64_t now)
{
    /* Per request on every node: most calls expire nothing, and then
     * expire would change nothing (current included). */
    unsigned emptied = 0;
    if (ta->windows[0].expiration <= now || ta->windows[1].expiration <= now) {
        emptied = timed_average_expire(ta, now);
    }
    timed_average_add(ta, value);
    return emptied;
}

uint64_t timed_average_min(TimedAverage *ta, int64_t now)
{
    timed_average_expire(ta, now);
    const TimedAverageWindow *w = &ta->windows[ta->current];
    return w->count ? w->min : 0;
}

uint64_t timed_average_max(TimedAverage *ta, int64_t now)
{
    timed_average_expire(ta, now);
    return ta->windows[ta->current].max;
}

uint64_t timed_average_avg(TimedAverage *ta, int64_t now)
{
    timed_average_expire(ta, now);
    const TimedAverageWindow *w = &ta->windows[ta->current];
    return w->count ? w->sum / w->count : 0;
}

uint64_t timed_average_sum(TimedAverage *ta, int64_t now, uint64_t *elapsed)
{
    timed_average_expire(ta, now);
    const TimedAverageWindow *w = &ta->windows[ta->current];
    if (elapsed) {
        *elapsed = ta->period - (uint64_t)(w->expiration - now);
    }
    return w->sum;
}
