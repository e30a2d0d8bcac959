/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 write-zeroes, discard and make-empty: rewriting L2
 * entries of whole clusters, as QEMU 7.2 does:
 *  - write-zeroes sets the v3 zero flag; with MAY_UNMAP (and always for
 *    compressed clusters) the host cluster is freed (entry 0x1), else it
 *    is kept (offset | COPIED | zero flag);
 *  - discard frees the cluster and leaves the zero flag on v3 (so backing
 *    data never reappears), 0 on v2; unallocated clusters without a
 *    backing file are left alone;
 *  - make-empty (commit) sets every entry to 0.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "block/drivers/qcow2/qcow2-subcluster.h"
#include "util/cleanup.h"

typedef enum { OP_ZEROES, OP_DISCARD, OP_MAKE_EMPTY } ZeroOp;

static bool is_allocated(Qcow2ClusterType t)
{
    return t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC ||
           t == QCOW2_CLUSTER_COMPRESSED;
}

static uint64_t new_entry(BDRVQcow2State *s, BlockNode *bs, ZeroOp op,
                          int flags, uint64_t old)
{
    Qcow2ClusterType t = qcow2_cluster_type(s, old);
    switch (op) {
    case OP_ZEROES: {
        bool unmap = t == QCOW2_CLUSTER_COMPRESSED ||
                     ((flags & BLOCK_REQ_MAY_UNMAP) && is_allocated(t));
        return unmap ? QCOW2_OFLAG_ZERO : old | QCOW2_OFLAG_ZERO;
    }
    case OP_DISCARD:
        if (!bs->backing && !is_allocated(t)) {
            return old;
        }
        if (s->discard_no_unref && (t == QCOW2_CLUSTER_NORMAL ||
                                    t == QCOW2_CLUSTER_ZERO_ALLOC)) {
            /* Keep the host cluster allocated, read zeroes. */
            return s->header.version >= 3 ? old | QCOW2_OFLAG_ZERO : old;
        }
        return s->header.version >= 3 ? QCOW2_OFLAG_ZERO : 0;
    case OP_MAKE_EMPTY:
        return 0;
    }
    return old;
}

/* new_entry for an extended L2 entry and its bitmap (*bitmap in/out):
 * zero means "all subclusters zero", as QEMU 7.2 writes it. */
static uint64_t new_entry_ext(BDRVQcow2State *s, BlockNode *bs, ZeroOp op,
                              int flags, uint64_t old, uint64_t *bitmap)
{
    Qcow2ClusterType t = qcow2_cluster_type_ext(s, old);
    switch (op) {
    case OP_ZEROES: {
        bool unmap = t == QCOW2_CLUSTER_COMPRESSED ||
                     ((flags & BLOCK_REQ_MAY_UNMAP) && is_allocated(t));
        *bitmap = QCOW2_L2_BITMAP_ALL_ZEROES;
        return unmap ? 0 : old;
    }
    case OP_DISCARD:
        if (!bs->backing && !is_allocated(t)) {
            return old;
        }
        *bitmap = QCOW2_L2_BITMAP_ALL_ZEROES;
        if (s->discard_no_unref && t == QCOW2_CLUSTER_NORMAL) {
            return old;
        }
        return 0;
    case OP_MAKE_EMPTY:
        *bitmap = 0;
        return 0;
    }
    return old;
}

static bool keeps_host(const BDRVQcow2State *s, uint64_t old, uint64_t new)
{
    if (qcow2_has_data_file(s)) {
        /* Host offset 0 is data there: COPIED (always set on its
         * clusters) tells an allocated entry. */
        uint64_t keep = QCOW2_L2E_OFFSET_MASK | QCOW2_OFLAG_COPIED;
        return (old & QCOW2_OFLAG_COPIED) && (new & keep) == (old & keep);
    }
    return !(old & QCOW2_OFLAG_COMPRESSED) &&
           (old & QCOW2_L2E_OFFSET_MASK) &&
           (new & QCOW2_L2E_OFFSET_MASK) == (old & QCOW2_L2E_OFFSET_MASK);
}

/* Clusters of a write-zeroes request that are only partly covered: they
 * become zero clusters only if the rest already reads as zeroes.  The
 * decision is taken under the lock with the clusters registered in
 * flight, so a concurrent write into the uncovered part is never lost. */
typedef struct PartialClusters {
    uint64_t first, last;      /* guest cluster indices, UINT64_MAX = none */
    bool first_done, last_done;
    /* The parts of the first / last cluster the request does not cover
     * read as zeroes through the backing chain (checked before the lock
     * is taken: the backing chain is read-only, so it cannot change). */
    bool first_below_zero, last_below_zero;
} PartialClusters;

static bool reads_zero(BlockNode *bs, uint64_t l2e, bool below_zero)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2ClusterType t = qcow2_cluster_type(s, l2e);
    return t == QCOW2_CLUSTER_ZERO_PLAIN || t == QCOW2_CLUSTER_ZERO_ALLOC ||
           (t == QCOW2_CLUSTER_UNALLOCATED && (!bs->backing || below_zero));
}

bool qcow2_reads_zero(BlockNode *node, uint64_t offset, uint64_t bytes)
{
    uint64_t size = block_node_size(node);
    while (bytes > 0 && offset < size) {
        uint64_t pnum;
        int ret = block_status_above(node, NULL, offset, bytes, &pnum, NULL,
                                     NULL, NULL);
        if (ret < 0 || !(ret & BLOCK_STATUS_ZERO) || pnum == 0) {
            return false;
        }
        pnum = MIN(pnum, bytes);
        offset += pnum;
        bytes -= pnum;
    }
    return true;
}

/* The same through bs's backing chain only. */
static bool backing_reads_zero(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    return !bs->backing || qcow2_reads_zero(bs->backing, offset, bytes);
}

/* Whether the parts of guest cluster index cluster outside the request
 * [offset, end) read as zeroes below bs (image size size). */
static bool rest_reads_zero_below(BlockNode *bs, uint64_t cluster,
                                  uint64_t offset, uint64_t end, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cstart = cluster << s->cluster_bits;
    uint64_t cend = MIN(cstart + s->cluster_size, size);
    if (offset > cstart && !backing_reads_zero(bs, cstart, offset - cstart)) {
        return false;
    }
    return end >= cend || backing_reads_zero(bs, end, cend - end);
}

/* Rewrites the entries of clusters [offset, offset+n*cs) inside one L2
 * table. */
static int zero_in_l2_locked(BlockNode *bs, uint64_t offset, uint64_t n,
                             ZeroOp op, int flags, PartialClusters *pc)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t l1_index = cluster >> s->l2_bits;
    uint64_t l2_index = cluster & (s->l2_entries - 1);
    void *table;
    int ret;

    bool need_table = op == OP_ZEROES ||
                      (op == OP_DISCARD && bs->backing &&
                       s->header.version >= 3);
    if (need_table) {
        ret = qcow2_get_l2_for_write_locked(bs, l1_index, &table);
    } else {
        ret = qcow2_get_l2_table_locked(bs, l1_index, &table);
        if (ret == 0 && table &&
            !(s->l1_table[l1_index] & QCOW2_OFLAG_COPIED)) {
            /* Perhaps a snapshot's too: changed only through a copy. */
            qcow2_cache_put(s->l2_cache, table);
            ret = qcow2_get_l2_for_write_locked(bs, l1_index, &table);
        }
    }
    if (ret < 0) {
        return ret;
    }
    if (!table) {
        /* Nothing mapped here: unallocated without backing reads zero. */
        if (pc && !bs->backing) {
            pc->first_done |= pc->first >= cluster && pc->first < cluster + n;
            pc->last_done |= pc->last >= cluster && pc->last < cluster + n;
        }
        return 0;
    }
    CLEANUP_FREE uint64_t *to_free = calloc(n, sizeof(uint64_t));
    if (!to_free) {
        qcow2_cache_put(s->l2_cache, table);
        return -ENOMEM;
    }
    uint64_t nb_free = 0;
    bool changed = false;
    for (uint64_t i = 0; s->extended_l2 && i < n; i++) {
        /* Partial clusters of extended L2 images are zeroed by
         * subclusters before they come here (no pc). */
        uint64_t old = qcow2_l2_get(s, table, l2_index + i);
        uint64_t old_bitmap = qcow2_l2_bitmap_get(table, l2_index + i);
        uint64_t bitmap = old_bitmap;
        uint64_t new = new_entry_ext(s, bs, op, flags, old, &bitmap);
        if (new == old && bitmap == old_bitmap) {
            continue;
        }
        qcow2_l2_set(s, table, l2_index + i, new);
        qcow2_l2_bitmap_set(table, l2_index + i, bitmap);
        changed = true;
        if (is_allocated(qcow2_cluster_type_ext(s, old)) && !keeps_host(s, old, new)) {
            to_free[nb_free++] = old;
        }
    }
    for (uint64_t i = 0; !s->extended_l2 && i < n; i++) {
        uint64_t old = qcow2_l2_get(s, table, l2_index + i);
        if (pc && (cluster + i == pc->first || cluster + i == pc->last)) {
            bool below = cluster + i == pc->first ? pc->first_below_zero
                                                  : pc->last_below_zero;
            if (cluster + i == pc->first && cluster + i == pc->last) {
                below = pc->first_below_zero && pc->last_below_zero;
            }
            if (!reads_zero(bs, old, below)) {
                continue;
            }
            if (cluster + i == pc->first) {
                pc->first_done = true;
            }
            if (cluster + i == pc->last) {
                pc->last_done = true;
            }
        }
        uint64_t new = new_entry(s, bs, op, flags, old);
        if (new == old) {
            continue;
        }
        qcow2_l2_set(s, table, l2_index + i, new);
        changed = true;
        if (is_allocated(qcow2_cluster_type(s, old)) && !keeps_host(s, old, new)) {
            to_free[nb_free++] = old;
        }
    }
    ret = 0;
    if (changed) {
        qcow2_cache_mark_dirty(s->l2_cache, table);
    }
    /* The L2 table reaches the disk before the refcounts drop. */
    qcow2_cache_put(s->l2_cache, table);
    for (uint64_t i = 0; ret == 0 && i < nb_free; i++) {
        ret = qcow2_defer_free_locked(bs, to_free[i]);
    }
    return ret;
}

/* Applies op to the clusters of [offset, end) (offset cluster aligned),
 * one L2 table at a time. */
static int zero_clusters(BlockNode *bs, uint64_t offset, uint64_t end,
                         ZeroOp op, int flags, PartialClusters *pc)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    while (offset < end) {
        if (atomic_load(&s->broken)) {
            return -EIO;
        }
        uint64_t cluster = offset >> s->cluster_bits;
        uint64_t room = s->l2_entries - (cluster & (s->l2_entries - 1));
        uint64_t n = MIN(room, DIV_ROUND_UP(end - offset, cs));
        Qcow2InflightAlloc slot;
        int ret;

        pthread_mutex_lock(&s->lock);
        qcow2_inflight_wait_locked(s, cluster, n);
        qcow2_inflight_add_locked(s, cluster, n, &slot);
        ret = qcow2_mark_dirty_locked(bs);
        if (ret == 0) {
            ret = zero_in_l2_locked(bs, offset, n, op, flags, pc);
        }
        qcow2_inflight_remove_locked(s, &slot);
        pthread_mutex_unlock(&s->lock);
        if (ret < 0) {
            return ret;
        }
        offset += n * cs;
    }
    return 0;
}

int qcow2_zeroize_clusters(BlockNode *bs, uint64_t offset, uint64_t end,
                           int flags)
{
    return zero_clusters(bs, offset, end, OP_ZEROES, flags, NULL);
}

static int write_zero_buffer(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             int flags)
{
    CLEANUP_FREE void *zeroes = calloc(1, bytes);
    if (!zeroes) {
        return -ENOMEM;
    }
    return qcow2_co_pwrite(bs, offset, bytes, zeroes, flags & BLOCK_REQ_FUA);
}

int qcow2_co_pwrite_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                           int flags)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->metadata_only) {
        return -EROFS;
    }
    uint64_t cs = s->cluster_size;
    uint64_t size = block_node_size(bs);
    if (s->header.version < 3) {
        return -ENOTSUP;
    }
    if (atomic_load(&s->broken)) {
        return -EIO;
    }
    int ret = qcow2_data_file_zero_raw(bs, offset, bytes, flags);
    if (ret < 0) {
        return ret;
    }
    if (s->extended_l2) {
        return qcow2_sc_pwrite_zeroes(bs, offset, bytes, flags);
    }
    uint64_t end = offset + bytes;
    PartialClusters pc = { UINT64_MAX, UINT64_MAX, false, false, false,
                           false };
    if (!IS_ALIGNED(offset, cs)) {
        pc.first = offset >> s->cluster_bits;
    }
    /* The partial cluster at the end of the image counts as whole. */
    if (!IS_ALIGNED(end, cs) && end < size) {
        pc.last = end >> s->cluster_bits;
    }
    /* As QEMU: a partial cluster unallocated in this image whose other
     * part reads as zeroes through the whole backing chain becomes a
     * zero cluster (decided under the lock from its L2 entry). */
    if (bs->backing && pc.first != UINT64_MAX) {
        pc.first_below_zero = rest_reads_zero_below(bs, pc.first, offset, end,
                                                    size);
    }
    if (bs->backing && pc.last != UINT64_MAX) {
        pc.last_below_zero = pc.last == pc.first
            ? pc.first_below_zero
            : rest_reads_zero_below(bs, pc.last, offset, end, size);
    }
    ret = zero_clusters(bs, ALIGN_DOWN(offset, cs), ALIGN_UP(end, cs),
                        OP_ZEROES, flags, &pc);
    if (ret < 0) {
        return ret;
    }
    /* Partial clusters holding other data get zeroes written into them
     * through copy-on-write. */
    uint64_t head_end = MIN(ALIGN_UP(offset, cs), end);
    bool head = pc.first != UINT64_MAX && !pc.first_done;
    bool tail = pc.last != UINT64_MAX && !pc.last_done &&
                !(pc.last == pc.first && head);
    if ((head || tail) && (flags & BLOCK_REQ_NO_FALLBACK)) {
        return -ENOTSUP;
    }
    if (head) {
        ret = write_zero_buffer(bs, offset, head_end - offset, flags);
    }
    if (ret == 0 && tail) {
        uint64_t tail_start = MAX(ALIGN_DOWN(end, cs), offset);
        ret = write_zero_buffer(bs, tail_start, end - tail_start, flags);
    }
    if (ret == 0 && (flags & BLOCK_REQ_FUA)) {
        ret = qcow2_flush_caches(bs);
        if (ret == 0) {
            ret = block_flush(bs->file);
        }
    }
    return ret;
}

int qcow2_co_pdiscard(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->metadata_only) {
        return -EROFS;
    }
    uint64_t cs = s->cluster_size;
    uint64_t size = block_node_size(bs);
    uint64_t end = offset + bytes;
    /* Only whole clusters (or the partial one at the end of the image)
     * can be discarded; discard is advisory, so the rest is ignored. */
    uint64_t start_a = ALIGN_UP(offset, cs);
    uint64_t end_a = end >= size ? ALIGN_UP(end, cs) : ALIGN_DOWN(end, cs);
    if (end_a <= start_a) {
        return 0;
    }
    return zero_clusters(bs, start_a, end_a, OP_DISCARD, 0, NULL);
}

int qcow2_make_empty(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (qcow2_can_empty_completely(bs)) {
        return qcow2_make_completely_empty(bs);
    }
    /* As QEMU, what is freed is discarded in the file too. */
    BlockDiscardMode saved = qcow2_punch_begin(bs);
    uint64_t span = s->cluster_size << s->l2_bits;
    int ret = 0;
    for (uint64_t i = 0; ret == 0 && i < s->l1_size; i++) {
        if (s->l1_table[i] & QCOW2_L1E_OFFSET_MASK) {
            ret = zero_clusters(bs, i * span, (i + 1) * span, OP_MAKE_EMPTY,
                                0, NULL);
        }
    }
    if (ret == 0) {
        ret = qcow2_flush_caches(bs);
    }
    qcow2_punch_end(bs, saved);
    return ret < 0 ? ret : block_flush(bs->file);
}

/* Whether the cluster holding guest offset has data in this image. */
static bool tail_holds_data(BlockNode *bs, uint64_t offset)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l2e = 0, n = 0;
    LOCK_GUARD(&s->lock);
    int ret = qcow2_get_cluster_locked(bs, offset, 1, &l2e, &n);
    if (ret < 0) {
        return true; /* not known: zero it to be safe */
    }
    /* A compressed cluster is left as it is: rewriting it would make it
     * a new data cluster, which qemu-img's shrink does not. */
    return qcow2_cluster_type(s, l2e) == QCOW2_CLUSTER_NORMAL;
}

int qcow2_discard_beyond(BlockNode *bs, uint64_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t old = block_node_size(bs);
    int ret = 0;
    if (new_size >= old) {
        return 0;
    }
    if (!IS_ALIGNED(new_size, cs) && tail_holds_data(bs, new_size)) {
        /* Stale bytes must not reappear if the image grows again.  Only
         * data of this image can be stale: a cluster left to the backing
         * file or reading as zeroes is left alone, as QEMU leaves it
         * (and so is a compressed one, see tail_holds_data). */
        uint64_t end = MIN(ALIGN_UP(new_size, cs), old);
        ret = s->header.version >= 3
              ? qcow2_co_pwrite_zeroes(bs, new_size, end - new_size, 0)
              : -ENOTSUP;
        if (ret == -ENOTSUP) {
            ret = write_zero_buffer(bs, new_size, end - new_size, 0);
        }
    }
    if (ret == 0 && ALIGN_UP(old, cs) > ALIGN_UP(new_size, cs)) {
        ret = zero_clusters(bs, ALIGN_UP(new_size, cs), ALIGN_UP(old, cs),
                            OP_MAKE_EMPTY, 0, NULL);
    }
    if (ret == 0) {
        ret = qcow2_flush_caches(bs);
    }
    return ret;
}
