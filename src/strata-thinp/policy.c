/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-thinp - when and by how much to extend (oVirt vdsm's policy). */
#include <math.h>

#include "strata-thinp/thinp.h"
#include "util/cleanup.h"

#define MiB (1024ull * 1024)

uint64_t thinp_chunk(const ThinpPolicy *p, bool copying)
{
    /* A copy writes as fast as the storage allows and the copy target
     * sees no pause on ENOSPC, so it gets twice the headroom. */
    return copying ? p->chunk * 2 : p->chunk;
}

uint64_t thinp_free_limit(const ThinpPolicy *p, bool copying)
{
    uint64_t chunk = thinp_chunk(p, copying);
    unsigned percent = p->free_percent > 100 ? 100 : p->free_percent;
    return chunk / 100 * (100 - percent) + chunk % 100 * (100 - percent) / 100;
}

uint64_t thinp_threshold(const ThinpPolicy *p, uint64_t physical,
                         bool copying)
{
    uint64_t limit = thinp_free_limit(p, copying);
    return physical > limit + 1 ? physical - limit : 1;
}

uint64_t thinp_max_size(const ThinpPolicy *p, uint64_t capacity)
{
    double max = round((double)capacity * p->max_factor);
    if (max >= 18446744073709551615.0) {
        return UINT64_MAX - MiB + 1;
    }
    uint64_t m = (uint64_t)max;
    return m > UINT64_MAX - MiB ? m : ALIGN_UP(m, MiB);
}

uint64_t thinp_next_size(const ThinpPolicy *p, uint64_t physical,
                         uint64_t capacity, bool copying)
{
    uint64_t max = thinp_max_size(p, capacity);
    if (physical >= max) {
        return physical;
    }
    uint64_t chunk = thinp_chunk(p, copying);
    uint64_t want = physical > max - chunk ? max : physical + chunk;
    want = want > UINT64_MAX - MiB ? want : ALIGN_UP(want, MiB);
    return want > max ? max : want;
}
