/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - where qcow2 image creation puts each structure.
 *
 * The layout is computed in memory, without touching the file, by
 * replaying the allocation decisions qemu-img makes when it creates an
 * image (header, refcount table and block at clusters 0-2, L1 table
 * appended, refcount blocks allocated on demand, L2 tables interleaved
 * with their data clusters for preallocation=metadata, a fresh refcount
 * area for falloc/full).  The result is byte-identical to qemu-img's, so
 * `qemu-img check`, `info` and `map` see the same image.
 */
#ifndef STRATA_QCOW2_CREATE_LAYOUT_H
#define STRATA_QCOW2_CREATE_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "util/error.h"

typedef struct Qcow2CreateParams {
    uint32_t version;          /* 2 or 3 */
    uint32_t cluster_bits;
    uint32_t refcount_order;
    uint64_t size;             /* virtual size, a multiple of 512 */
    PreallocMode prealloc;
    bool lazy_refcounts;
    bool extended_l2;          /* 16-byte L2 entries with subclusters */
    uint8_t compression_type;
    const char *backing_file;  /* NULL for none */
    const char *backing_fmt;   /* NULL for none */
    /* External data file: its name for the header (NULL for none), and
     * whether it stays a raw image of the disk.  Data clusters are then
     * mapped at their guest offsets, outside the image file. */
    const char *data_file;
    bool data_file_raw;
} Qcow2CreateParams;

/* nb guest clusters from guest_cluster mapped to as many contiguous
 * host clusters at host_offset (never crossing an L2 table). */
typedef struct Qcow2LayoutRun {
    uint64_t guest_cluster;
    uint64_t host_offset;
    uint64_t nb;
} Qcow2LayoutRun;

/* An L2 table (for L1 entry l1_index) and its runs in l->runs. */
typedef struct Qcow2LayoutL2 {
    uint64_t offset;
    uint64_t l1_index;
    size_t first_run;
    size_t nb_runs;
} Qcow2LayoutL2;

typedef struct Qcow2LayoutBuf {
    uint64_t offset;
    uint64_t len;
    uint8_t *data;
} Qcow2LayoutBuf;

typedef struct Qcow2Layout {
    Qcow2LayoutBuf *bufs;      /* header, refcount table/blocks, L1 */
    size_t nb_bufs;
    Qcow2LayoutL2 *l2;         /* L2 tables, filled on write */
    size_t nb_l2;
    Qcow2LayoutRun *runs;      /* in guest order */
    size_t nb_runs;
    uint64_t cluster_size;
    unsigned l2e_shift;        /* log2 of an L2 entry's bytes */
    uint64_t file_size;        /* final size of the file */
    /* falloc/full: the data area to allocate on disk ([0,0) if none). */
    uint64_t data_start, data_end;
} Qcow2Layout;

bool qcow2_layout_build(const Qcow2CreateParams *p, Qcow2Layout *l,
                        Error **errp);
/* Fills buf (one cluster) with the big-endian L2 table t. */
void qcow2_layout_fill_l2(const Qcow2Layout *l, const Qcow2LayoutL2 *t,
                          uint8_t *buf);
void qcow2_layout_free(Qcow2Layout *l);

/* Refcount blocks needed to count clusters clusters and themselves and
 * the refcount table that lists them (QEMU's
 * qcow2_refcount_metadata_size; generous leaves room for the table to
 * grow by half). */
uint64_t qcow2_refblocks_needed(uint64_t clusters, uint64_t cluster_size,
                                uint64_t refblock_entries, bool generous);

#endif
