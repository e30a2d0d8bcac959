/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the adaptive stream rate (see rate-control.h). */
#include "jobs/rate-control.h"

/* Without a speed, the ceiling is what a local disk copies at. */
#define DEFAULT_CEILING (1024ULL * 1024 * 1024)
/* The floor: a share of the ceiling, and never less than 1 MiB/s. */
#define FLOOR_DIVISOR 64
#define MIN_FLOOR (1024ULL * 1024)
/* Latency above baseline * (1 + margin) + slack counts as hurt.  The
 * slack keeps requests served from memory in a few microseconds, whose
 * mean wanders by a microsecond from period to period, from reading as
 * hurt: the job's share of the CPU is the scheduler's business (the job
 * runs at the lowest priority), the controller's is the storage and the
 * link, where contention costs tens of microseconds and more. */
#define MARGIN 0.10
#define SLACK_NS 20000.0
/* A node whose clients made this many requests before the job started
 * gives their mean latency as the first baseline. */
#define PRIOR_OPS 1000
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
    /* The clients' history on the node, before the job, is what the
     * disk gave them without it: the first baseline, until the first
     * measurement at the usual interval (a yield early in a short
     * stream would cost it more than a slightly old baseline).  With a
     * baseline the job starts at the ceiling: one period shows whether
     * the clients suffer.  Without one it measures first and starts
     * gently, at a sixteenth of the ceiling. */
    if (first.ops >= PRIOR_OPS) {
        rc->baseline_ns = (double)first.total_time_ns / (double)first.ops;
        rc->next_probe_ns = now_ns + jitter(rc, PROBE_EVERY_NS, 0.25);
        rc->rate = rc->ceiling;
    } else {
        rc->next_probe_ns = now_ns;
        rc->rate = rc->ceiling / 16 > rc->floor ? rc->ceiling / 16
                                                : rc->floor;
    }
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
             * average keeps one odd window from moving it much; the
             * first window replaces the prior from history. */
            rc->baseline_ns = rc->baseline_ns > 0 && rc->probes > 0
                              ? 0.7 * rc->baseline_ns + 0.3 * mean : mean;
            rc->probes++;
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
    /* Even one slow request counts: a client stuck behind the job's
     * copies completes few requests, and must not pass for idle. */
    bool hurt = ops > 0 && rc->baseline_ns > 0 &&
                mean > rc->baseline_ns * (1.0 + MARGIN) + SLACK_NS;
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
