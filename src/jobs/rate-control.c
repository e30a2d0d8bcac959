/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the adaptive stream rate (see rate-control.h). */
#include "jobs/rate-control.h"

/* Without a speed, the ceiling is what a local disk copies at. */
#define DEFAULT_CEILING (1024ULL * 1024 * 1024)
/* The floor: a share of the ceiling, and never less than 1 MiB/s. */
#define FLOOR_DIVISOR 64
#define MIN_FLOOR (1024ULL * 1024)
/* Latency above baseline * (1 + margin) counts as hurt. */
#define MARGIN 0.10
/* Fewer client requests than this in a period is an idle guest. */
#define BUSY_OPS 4
/* Re-measure the baseline every so often, for this long. */
#define PROBE_EVERY_NS (5 * 1000 * 1000 * 1000ULL)
#define PROBE_NS (200 * 1000 * 1000ULL)
/* The additive step: a share of the ceiling per period. */
#define STEP_DIVISOR 64
/* The random pause after a decrease: up to this long. */
#define MAX_BACKOFF_NS (200 * 1000 * 1000ULL)

static uint32_t next_random(RateControl *rc)
{
    /* xorshift32: enough to spread daemons apart, not for secrets. */
    uint32_t x = rc->seed ? rc->seed : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rc->seed = x;
    return x;
}

/* v scaled by a random factor in [1 - spread, 1 + spread]. */
static uint64_t jitter(RateControl *rc, uint64_t v, double spread)
{
    double r = (double)(next_random(rc) % 10001) / 10000.0;   /* 0..1 */
    return (uint64_t)((double)v * (1.0 - spread + 2.0 * spread * r));
}

void rate_control_init(RateControl *rc, uint64_t ceiling, uint32_t seed,
                       uint64_t now_ns, RateSample first)
{
    *rc = (RateControl){
        .ceiling = ceiling ? ceiling : DEFAULT_CEILING,
        .seed = seed,
        .prev_ops = first.ops,
        .prev_time_ns = first.total_time_ns,
    };
    rc->floor = rc->ceiling / FLOOR_DIVISOR;
    if (rc->floor < MIN_FLOOR) {
        rc->floor = rc->ceiling < MIN_FLOOR ? rc->ceiling : MIN_FLOOR;
    }
    /* Start gently: a sixteenth of the ceiling until the clients have
     * been seen, and measure the baseline first. */
    rc->rate = rc->ceiling / 16 > rc->floor ? rc->ceiling / 16 : rc->floor;
    rc->next_probe_ns = now_ns;
}

RateDecision rate_control_update(RateControl *rc, uint64_t now_ns,
                                 RateSample s)
{
    uint64_t ops = s.ops - rc->prev_ops;
    uint64_t time_ns = s.total_time_ns - rc->prev_time_ns;
    rc->prev_ops = s.ops;
    rc->prev_time_ns = s.total_time_ns;
    double mean = ops ? (double)time_ns / (double)ops : 0;

    if (rc->yielding) {
        if (ops >= BUSY_OPS) {
            /* The clients alone: what the disk gives them.  A slow
             * average keeps one odd window from moving it much. */
            rc->baseline_ns = rc->baseline_ns > 0
                              ? 0.7 * rc->baseline_ns + 0.3 * mean : mean;
        }
        if (now_ns < rc->yield_until_ns) {
            return (RateDecision){ .rate = rc->rate,
                                   .pause_ns = rc->yield_until_ns - now_ns };
        }
        rc->yielding = false;
        rc->next_probe_ns = now_ns + jitter(rc, PROBE_EVERY_NS, 0.25);
        return (RateDecision){ .rate = rc->rate };
    }
    if (now_ns >= rc->next_probe_ns) {
        rc->yielding = true;
        rc->yield_until_ns = now_ns + PROBE_NS;
        return (RateDecision){ .rate = rc->rate, .pause_ns = PROBE_NS };
    }

    bool busy = ops >= BUSY_OPS;
    bool hurt = busy && rc->baseline_ns > 0 &&
                mean > rc->baseline_ns * (1.0 + MARGIN);
    RateDecision d = { 0 };
    if (hurt) {
        rc->rate /= 2;
        if (rc->rate < rc->floor) {
            rc->rate = rc->floor;
        }
        rc->decreases++;
        d.pause_ns = next_random(rc) % MAX_BACKOFF_NS;
    } else if (!busy) {
        /* Nobody to yield to: all the ceiling allows, at once (the guest
         * idle is the time to copy in). */
        rc->rate = rc->ceiling;
        rc->increases++;
    } else {
        /* Busy and unhurt: double until the clients first suffer (slow
         * start), then grow by a step. */
        uint64_t step = rc->decreases == 0
                        ? rc->rate
                        : jitter(rc, rc->ceiling / STEP_DIVISOR, 0.25);
        rc->rate = rc->rate + step > rc->ceiling ? rc->ceiling
                                                 : rc->rate + step;
        rc->increases++;
    }
    d.rate = rc->rate;
    return d;
}
