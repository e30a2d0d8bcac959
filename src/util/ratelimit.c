/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - byte-rate limiter (see ratelimit.h).
 *
 * A virtual clock: every caller books the interval its bytes need at the
 * configured rate, starting where the previous booking ended (or now, if
 * the limiter has been idle), and sleeps until its booking starts.  That
 * keeps the long-run rate exact without a refill thread, and an idle
 * limiter does not save up a burst.
 */
#include "util/ratelimit.h"

#include <errno.h>
#include <time.h>

#define NSEC_PER_SEC 1000000000ull

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

void ratelimit_init(RateLimit *rl, uint64_t bytes_per_sec)
{
    pthread_mutex_init(&rl->lock, NULL);
    rl->bytes_per_sec = bytes_per_sec;
    rl->next_ns = 0;
}

void ratelimit_destroy(RateLimit *rl)
{
    pthread_mutex_destroy(&rl->lock);
}

void ratelimit_wait(RateLimit *rl, uint64_t bytes)
{
    if (rl->bytes_per_sec == 0) {
        return;
    }
    /* Computed in long double: bytes * 1e9 overflows 64 bits past 18 GB. */
    uint64_t cost = (uint64_t)((long double)bytes * NSEC_PER_SEC /
                               rl->bytes_per_sec);
    uint64_t start;

    pthread_mutex_lock(&rl->lock);
    uint64_t now = now_ns();
    start = rl->next_ns > now ? rl->next_ns : now;
    rl->next_ns = start + cost;
    pthread_mutex_unlock(&rl->lock);

    struct timespec until = {
        .tv_sec = (time_t)(start / NSEC_PER_SEC),
        .tv_nsec = (long)(start % NSEC_PER_SEC),
    };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) ==
           EINTR) {
    }
}
