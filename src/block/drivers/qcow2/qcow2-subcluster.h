/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the data path of qcow2 images with extended L2 entries
 * (qcow2-subcluster.c, qcow2-subcluster-write.c).  The generic entry
 * points of qcow2-rw.c and qcow2-zero.c hand over to these when
 * s->extended_l2 is set.
 */
#ifndef STRATA_QCOW2_SUBCLUSTER_H
#define STRATA_QCOW2_SUBCLUSTER_H

#include "block/drivers/qcow2/qcow2.h"

/* The mapping of a run of guest bytes of one subcluster type. */
typedef struct Qcow2ScMapping {
    uint64_t l2e;              /* entry of the run's first cluster */
    uint64_t bitmap;           /* and its subcluster bitmap */
    Qcow2SubclusterType type;  /* never QCOW2_SC_INVALID */
    uint64_t bytes;            /* length of the run from the offset */
} Qcow2ScMapping;

/* Looks up guest offset: the run starting there, at most max_bytes long,
 * inside one L2 table, with one subcluster type and (for types with a
 * host cluster) contiguous host clusters; a compressed cluster is a run
 * of its own.  An invalid bitmap marks the image corrupt (-EIO). */
int qcow2_sc_lookup_locked(BlockNode *bs, uint64_t offset, uint64_t max_bytes,
                           Qcow2ScMapping *m);
/* Reads guest [offset, offset+len), inside the run m describes. */
int qcow2_sc_read_mapped(BlockNode *bs, const Qcow2ScMapping *m,
                         uint64_t offset, uint64_t len, uint8_t *buf);

int qcow2_sc_pread(BlockNode *bs, uint64_t offset, uint64_t bytes,
                   uint8_t *buf);
/* Block status of bs and what is below it, for use from inside a
 * request on bs (it does not enter bs's drain gate again, which a
 * pending drain would block).  As block_status_above. */
int qcow2_sc_status_above(BlockNode *bs, uint64_t offset, uint64_t bytes,
                          uint64_t *pnum);
/* Whether [offset, offset+bytes) reads as zeroes by block status:
 * QEMU's is_zero (clamped to the image), or with one_answer its
 * bdrv_co_is_zero_fast (one answer must cover all, inside the image). */
bool qcow2_sc_reads_zero(BlockNode *bs, uint64_t offset, uint64_t bytes,
                         bool one_answer);
int qcow2_sc_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                          uint64_t *pnum, uint64_t *map, BlockNode **file);
/* Writes the first piece of [offset, offset+bytes) that stays in one L2
 * table: a run of clusters written in place, or a run needing new host
 * clusters (qcow2_co_pwrite loops over the pieces).  Returns the bytes
 * written or -errno; sets *meta_changed when the L2 table changed. */
int64_t qcow2_sc_write_piece(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             const uint8_t *buf, int flags,
                             bool *meta_changed);
int qcow2_sc_pwrite_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                           int flags);

/* Zero (sub)clusters for [offset, offset+bytes): offset subcluster
 * aligned, the end too or at the end of the image (QEMU's
 * qcow2_subcluster_zeroize). */
int qcow2_sc_zeroize(BlockNode *bs, uint64_t offset, uint64_t bytes,
                     int flags);

/* qcow2-zero.c: write-zeroes of the whole clusters of [offset, end)
 * (offset cluster aligned; end too, or the end of the image). */
int qcow2_zeroize_clusters(BlockNode *bs, uint64_t offset, uint64_t end,
                           int flags);

#endif
