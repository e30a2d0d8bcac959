/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - a byte-rate limiter shared by threads (convert -r, and later
 * job speeds). */
#ifndef STRATA_UTIL_RATELIMIT_H
#define STRATA_UTIL_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

typedef struct RateLimit {
    pthread_mutex_t lock;
    uint64_t bytes_per_sec;   /* 0 = unlimited */
    uint64_t next_ns;         /* CLOCK_MONOTONIC time the next byte may go */
} RateLimit;

void ratelimit_init(RateLimit *rl, uint64_t bytes_per_sec);
void ratelimit_destroy(RateLimit *rl);
/* Blocks the caller until `bytes` more may pass without the average rate
 * since the limiter was last idle exceeding bytes_per_sec.  Callers are
 * served in the order they ask, so threads share the rate fairly. */
void ratelimit_wait(RateLimit *rl, uint64_t bytes);

#endif
