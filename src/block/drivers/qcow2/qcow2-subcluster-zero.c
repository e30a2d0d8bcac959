/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - write-zeroes on qcow2 images with extended L2 entries.
 *
 * Zeroes are written by subcluster: whole clusters become all-zero
 * bitmaps (freeing the host cluster with MAY_UNMAP), whole subclusters
 * get their zero bits, and a partial subcluster becomes a zero one only
 * if the rest of it already reads as zeroes and holds no data of its
 * own; otherwise zeroes are written into it as data.  The request is cut
 * into those pieces exactly as QEMU 7.2's block layer cuts it (by
 * pwrite_zeroes_alignment, the subcluster size), since where the cuts
 * fall shows in the bitmaps.
 */
#include <errno.h>
#include <stdlib.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "block/drivers/qcow2/qcow2-subcluster.h"
#include "util/cleanup.h"

/* Sets the zero bits (and clears the allocation bits) of nb subclusters
 * from the one at offset, inside one cluster.  -ENOTSUP for a
 * compressed cluster (it cannot be zeroed in part). */
static int zero_subclusters(BlockNode *bs, uint64_t offset, unsigned nb)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cluster = offset >> s->cluster_bits;
    unsigned sc = (unsigned)((offset & (s->cluster_size - 1)) >>
                             s->subcluster_bits);
    Qcow2InflightAlloc slot;
    void *table;

    LOCK_GUARD(&s->lock);
    qcow2_inflight_wait_locked(s, cluster, 1);
    int ret = qcow2_mark_dirty_locked(bs);
    if (ret < 0) {
        return ret;
    }
    qcow2_inflight_add_locked(s, cluster, 1, &slot);
    ret = qcow2_get_l2_for_write_locked(bs, cluster >> s->l2_bits, &table);
    if (ret == 0) {
        uint64_t idx = cluster & (s->l2_entries - 1);
        if (qcow2_cluster_type_ext(s, qcow2_l2_get(s, table, idx)) ==
            QCOW2_CLUSTER_COMPRESSED) {
            ret = -ENOTSUP;
        } else {
            uint64_t old = qcow2_l2_bitmap_get(table, idx);
            uint64_t bitmap = (old | QCOW2_SC_ZERO_RANGE(sc, sc + nb)) &
                              ~QCOW2_SC_ALLOC_RANGE(sc, sc + nb);
            if (bitmap != old) {
                qcow2_l2_bitmap_set(table, idx, bitmap);
                qcow2_cache_mark_dirty(s->l2_cache, table);
            }
        }
        qcow2_cache_put(s->l2_cache, table);
    }
    qcow2_inflight_remove_locked(s, &slot);
    return ret;
}

int qcow2_sc_zeroize(BlockNode *bs, uint64_t offset, uint64_t bytes,
                     int flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t size = block_node_size(bs);
    uint64_t end = offset + bytes;
    uint64_t head = MIN(end, ALIGN_UP(offset, s->cluster_size)) - offset;
    offset += head;
    uint64_t tail = end >= size
                    ? 0
                    : end - MAX(offset, ALIGN_DOWN(end, s->cluster_size));
    end -= tail;
    int ret = 0;
    if (head) {
        ret = zero_subclusters(bs, offset - head,
                               (unsigned)DIV_ROUND_UP(head,
                                                      s->subcluster_size));
    }
    if (ret == 0 && end > offset) {
        ret = qcow2_zeroize_clusters(bs, offset, end, flags);
    }
    if (ret == 0 && tail) {
        ret = zero_subclusters(bs, end,
                               (unsigned)DIV_ROUND_UP(tail,
                                                      s->subcluster_size));
    }
    return ret;
}

/* One piece as the block layer hands it to the driver: either aligned,
 * or inside one subcluster. */
static int zero_piece(BlockNode *bs, uint64_t offset, uint64_t bytes,
                      int flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t scs = s->subcluster_size;
    uint64_t size = block_node_size(bs);
    uint64_t head = offset & (scs - 1);
    uint64_t tail = ALIGN_UP(offset + bytes, scs) - (offset + bytes);
    if (offset + bytes == size) {
        tail = 0;
    }
    if (head || tail) {
        if (!qcow2_sc_reads_zero(bs, offset - head, head, false) ||
            !qcow2_sc_reads_zero(bs, offset + bytes, tail, false)) {
            return -ENOTSUP;
        }
        offset -= head;
        bytes = scs;
        /* Only a subcluster without data of its own may become zero. */
        Qcow2ScMapping m;
        int ret;
        {
            LOCK_GUARD(&s->lock);
            ret = qcow2_sc_lookup_locked(bs, offset, scs, &m);
        }
        if (ret < 0) {
            return ret;
        }
        if (m.type == QCOW2_SC_NORMAL || m.type == QCOW2_SC_COMPRESSED) {
            return -ENOTSUP;
        }
    }
    return qcow2_sc_zeroize(bs, offset, bytes, flags);
}

int qcow2_sc_pwrite_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                           int flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t scs = s->subcluster_size;
    uint64_t head = offset & (scs - 1);
    uint64_t tail = (offset + bytes) & (scs - 1);
    bool need_flush = false;
    int ret = 0;

    while (bytes > 0 && ret == 0) {
        uint64_t num = bytes;
        if (head) {
            num = MIN(bytes, scs - head);
            head = (head + num) & (scs - 1);
        } else if (tail && num > scs) {
            num -= tail;
        }
        ret = zero_piece(bs, offset, num, flags & ~BLOCK_REQ_FUA);
        if (ret != -ENOTSUP) {
            need_flush |= (flags & BLOCK_REQ_FUA) != 0;
        }
        if (ret == -ENOTSUP && !(flags & BLOCK_REQ_NO_FALLBACK)) {
            CLEANUP_FREE void *zeroes = calloc(1, num);
            if (!zeroes) {
                return -ENOMEM;
            }
            ret = qcow2_co_pwrite(bs, offset, num, zeroes,
                                  flags & BLOCK_REQ_FUA);
        }
        offset += num;
        bytes -= num;
    }
    if (ret == 0 && need_flush) {
        ret = qcow2_flush_caches(bs);
        if (ret == 0) {
            ret = block_flush(bs->file);
        }
    }
    return ret;
}
