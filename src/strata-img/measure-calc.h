/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - the arithmetic behind `measure`: how large a new qcow2 or
 * raw image file gets, from the creation options and, when there is a
 * source, from what the source has allocated.  The figures are
 * qemu-img 7.2's, to the byte, so scripts that size volumes from them
 * get the same volumes. */
#ifndef STRATA_IMG_MEASURE_CALC_H
#define STRATA_IMG_MEASURE_CALC_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

typedef struct MeasureTarget {
    bool qcow2;              /* false: raw */
    uint64_t cluster_size;   /* qcow2 */
    unsigned refcount_order; /* qcow2: log2 of refcount_bits */
    int version;             /* qcow2: 2 or 3 */
    bool extended_l2;        /* qcow2 */
    bool full_prealloc;      /* qcow2: preallocation=falloc or full */
    bool has_backing;        /* qcow2: -o backing_file given */
    uint64_t size;           /* -o size / --size, 0 when absent */
    uint64_t luks_header;    /* qcow2: bytes of a LUKS header, 0: none */
} MeasureTarget;

typedef struct MeasureResult {
    uint64_t required;
    uint64_t fully_allocated;
    bool has_bitmaps;
    uint64_t bitmaps;
} MeasureResult;

/* Reads the target's options (sizes and numbers already converted to
 * integers) as QEMU's measure does, in its order; prints QEMU's message
 * and returns false on a bad value.  secrets (a JSON array of ids, may
 * be NULL) are the secret objects given with --object: a LUKS header
 * can only be sized with its key secret defined. */
bool measure_target_from_opts(const char *fmt, json_t *opts,
                              json_t *secrets, MeasureTarget *t);

/* Bytes a qcow2 image of virtual size total takes with every cluster
 * allocated: header, L1, L2 and refcount structures plus the data. */
uint64_t measure_qcow2_full_size(uint64_t total, uint64_t cluster_size,
                                 unsigned refcount_order, bool extended_l2);

/* Fills r for target t; src (may be NULL) is the image whose data the
 * new image will hold.  Prints the error and returns false on failure
 * (the source cannot be read, or the size does not fit the target). */
bool measure_compute(const MeasureTarget *t, BlockNode *src,
                     MeasureResult *r);

#endif
