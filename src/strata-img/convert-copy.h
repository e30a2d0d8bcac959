/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - the parallel copy engine behind convert. */
#ifndef STRATA_IMG_CONVERT_COPY_H
#define STRATA_IMG_CONVERT_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/ratelimit.h"

typedef struct ConvertParams {
    BlockNode **src;          /* sources, concatenated in order */
    int nsrc;
    BlockNode *dst;
    uint64_t min_sparse;      /* -S: 0 = no zero detection */
    uint32_t dst_cluster;     /* target cluster size (0 = none) */
    bool compressed;          /* -c */
    bool has_zero_init;       /* target reads as zeroes already */
    bool target_has_backing;  /* -B: leave unallocated ranges to it */
    uint64_t target_backing_size; /* zeroes from here on are left to the
                                   * backing file; UINT64_MAX: unknown */
    bool out_of_order;        /* -W */
    bool salvage;             /* --salvage: unreadable sectors (and block
                               * status) become warnings and zeroes */
    int workers;              /* -m */
    RateLimit *rate;          /* -r: paces the data read from the sources */
    ImgProgress *progress;
} ConvertParams;

/* Copies every source into dst.  Returns 0, or 1 after printing an
 * error naming the failed offset. */
int convert_copy(const ConvertParams *p);

#endif
