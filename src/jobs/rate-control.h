/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the adaptive rate of a stream: copy fast while the guest is
 * idle, back off while it is busy (docs/stream.md).
 *
 * Every period the controller reads what the node's clients did (their
 * own requests only: the accounting keeps the job's apart by origin):
 * how many requests and their mean latency.  It keeps a baseline of the
 * clients' latency without the job (their history before it started,
 * then windows where it pauses its copying now and then), and then
 *  - clients busy and slower than the baseline by a margin (relative,
 *    plus an absolute slack for requests served from memory): the rate is
 *    halved (multiplicative decrease), plus a random pause so that many
 *    daemons sharing one template server do not back off and return in
 *    step;
 *  - clients idle: the rate goes to the ceiling at once;
 *  - clients busy but not slower: the rate doubles until they first
 *    suffer (slow start), and from then on grows by a step (additive
 *    increase), jittered for the same reason, up to the ceiling.
 * The rate never drops below a floor, so the job always finishes.  The
 * CPU is not its business: the job's thread runs at the lowest priority
 * (stream.c).
 * Pure logic: time and statistics are passed in, so tests drive it.
 */
#ifndef STRATA_JOBS_RATE_CONTROL_H
#define STRATA_JOBS_RATE_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

/* Period between decisions. */
#define RATE_CONTROL_PERIOD_NS (100 * 1000 * 1000ULL)

typedef struct RateControl {
    uint64_t ceiling;          /* bytes/s */
    uint64_t floor;            /* bytes/s */
    uint64_t rate;             /* current bytes/s */
    double baseline_ns;        /* clients' mean latency without the job;
                                  0 = not measured yet */
    uint64_t prev_ops, prev_time_ns;
    uint64_t next_probe_ns;    /* when to yield and measure again */
    uint64_t yield_until_ns;   /* inside a yield window until then */
    bool yielding;
    uint32_t seed;
    uint64_t decreases, increases;
    uint64_t probes;           /* baseline windows measured */
} RateControl;

/* A client sample: cumulative counters of the clients' requests on the
 * node (reads and writes), as the accounting keeps them. */
typedef struct RateSample {
    uint64_t ops;
    uint64_t total_time_ns;
} RateSample;

/* ceiling 0 means unlimited (a large default ceiling is used). */
void rate_control_init(RateControl *rc, uint64_t ceiling, uint32_t seed,
                       uint64_t now_ns, RateSample first);

typedef struct RateDecision {
    uint64_t rate;             /* bytes/s to copy at from now */
    uint64_t pause_ns;         /* copy nothing for this long first */
} RateDecision;

/* One decision from the clients' counters at now_ns. */
RateDecision rate_control_update(RateControl *rc, uint64_t now_ns,
                                 RateSample s);

#endif
