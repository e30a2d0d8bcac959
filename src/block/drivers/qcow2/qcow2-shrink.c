/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - giving space back to the volume, as QEMU 7.2 does:
 *  - a shrink (qcow2_co_truncate), after discarding the guest clusters
 *    past the new end, frees the L2 tables wholly past it and the
 *    refcount blocks that count nothing but themselves, punches every
 *    freed host cluster out of the file and cuts the file after the
 *    last cluster still in use;
 *  - emptying an image after a commit (make_completely_empty) lays the
 *    metadata out afresh in the first clusters and cuts the file there.
 * On a thin volume that space is what the user pays for.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/log.h"

/* L2 tables covering only guest clusters at or past new_l1 entries. */
static int free_tail_l2_locked(BlockNode *bs, uint64_t new_l1)
{
    BDRVQcow2State *s = bs->opaque;
    for (uint64_t i = s->l1_size; i-- > new_l1;) {
        uint64_t l2 = s->l1_table[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2) {
            continue;
        }
        /* The caller wrote the table's entries back (all unallocated
         * now); the L1 entry goes first, then the cluster. */
        qcow2_cache_discard(s->l2_cache, l2);
        s->l1_table[i] = 0;
        uint64_t zero = 0;
        block_debug_event(bs->file, BLKDBG_L1_SHRINK_WRITE_TABLE);
        int ret = qcow2_write_meta_locked(bs, s->l1_table_offset + i * 8, 8,
                                          &zero, QCOW2_META_L1);
        if (ret == 0) {
            ret = block_flush(bs->file);
        }
        if (ret == 0) {
            block_debug_event(bs->file, BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS);
            ret = qcow2_free_clusters_locked(bs, l2, s->cluster_size);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Whether the refcount block holds no count but perhaps its own. */
static bool refblock_unused(BDRVQcow2State *s, const void *block,
                            uint64_t index, uint64_t rb)
{
    uint64_t own = (rb >> s->cluster_bits) >> s->refblock_bits == index
                   ? (rb >> s->cluster_bits) & (s->refblock_entries - 1)
                   : UINT64_MAX;
    for (uint64_t i = 0; i < s->refblock_entries; i++) {
        if (i != own && qcow2_refblock_get(block, i, s->refcount_order)) {
            return false;
        }
    }
    return true;
}

static int free_unused_refblocks_locked(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        uint64_t rb = s->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        void *block;
        if (!rb) {
            continue;
        }
        int ret = qcow2_cache_get_locked(bs, s->refblock_cache, rb, false,
                                         &block);
        if (ret < 0) {
            return ret;
        }
        bool unused = refblock_unused(s, block, i, rb);
        qcow2_cache_put(s->refblock_cache, block);
        if (!unused) {
            continue;
        }
        qcow2_cache_discard(s->refblock_cache, rb);
        s->reftable[i] = 0;
        uint64_t zero = 0;
        ret = qcow2_write_meta_locked(bs, s->reftable_offset + i * 8, 8,
                                      &zero, QCOW2_META_REFTABLE);
        if (ret == 0) {
            ret = block_flush(bs->file);
        }
        if (ret < 0) {
            return ret;
        }
        if ((rb >> s->cluster_bits) >> s->refblock_bits == i) {
            /* It counted only itself: gone with it. */
            if (bs->file->discard == BLOCK_DISCARD_UNMAP) {
                block_discard(bs->file, rb, s->cluster_size);
            }
        } else {
            ret = qcow2_free_clusters_locked(bs, rb, s->cluster_size);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

/* One past the last host cluster with a reference, in bytes. */
static int used_end_locked(BlockNode *bs, uint64_t file_size, uint64_t *end)
{
    BDRVQcow2State *s = bs->opaque;
    for (uint64_t c = DIV_ROUND_UP(file_size, s->cluster_size); c-- > 0;) {
        uint64_t rc;
        int ret = qcow2_get_refcount_locked(bs, c, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc) {
            *end = (c + 1) << s->cluster_bits;
            return 0;
        }
    }
    return -EIO; /* not even the header is counted */
}

static int release_locked(BlockNode *bs, uint64_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    int ret = qcow2_flush_caches_locked(bs);
    if (ret == 0) {
        ret = free_tail_l2_locked(bs, DIV_ROUND_UP(new_size, l2_span));
    }
    if (ret == 0) {
        ret = qcow2_flush_caches_locked(bs);
    }
    if (ret == 0) {
        ret = free_unused_refblocks_locked(bs);
    }
    if (ret == 0) {
        ret = qcow2_flush_caches_locked(bs);
    }
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret < 0) {
        return ret;
    }

    uint64_t file_size = block_node_size(bs->file);
    uint64_t end;
    ret = used_end_locked(bs, file_size, &end);
    if (ret < 0) {
        return ret;
    }
    /* Nothing is handed out past the cut, nor reused from before it:
     * the reuse list may name clusters that are gone now. */
    qcow2_reuse_clear(s);
    if (s->compressed_next >= end) {
        s->compressed_next = 0;
    }
    if (end < file_size && !block_node_is_block_device(bs->file)) {
        Error *err = NULL;
        if (!block_truncate(bs->file, end, false, PREALLOC_OFF, &err)) {
            /* As QEMU: the shrink itself has succeeded. */
            warn_report("Failed to truncate the tail of the image: %s",
                        error_get_pretty(err));
            error_free(err);
        } else {
            s->next_alloc = end;
        }
    }
    return qcow2_meta_rebuild_locked(bs);
}

/* QEMU discards in the file what a shrink or an emptying frees,
 * whatever the image's discard option says. */
BlockDiscardMode qcow2_punch_begin(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    BlockDiscardMode saved = bs->file->discard;
    bs->file->discard = BLOCK_DISCARD_UNMAP;
    LOCK_GUARD(&s->lock);
    s->punch_freed = true;
    return saved;
}

void qcow2_punch_end(BlockNode *bs, BlockDiscardMode saved)
{
    BDRVQcow2State *s = bs->opaque;
    {
        LOCK_GUARD(&s->lock);
        s->punch_freed = false;
    }
    bs->file->discard = saved;
}

/* QEMU's discard of the cut clusters goes through L2 tables it creates
 * where there are none; those past the new end go again, but the one
 * the new end falls in stays.  It is created here too, so the file ends
 * where qemu-img's does. */
static int keep_last_l2_locked(BlockNode *bs, uint64_t new_size,
                               uint64_t old_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t span = s->cluster_size << s->l2_bits;
    uint64_t cut = ALIGN_UP(new_size, s->cluster_size);
    uint64_t index = cut / span;
    void *table;
    if (cut >= old_size || index >= DIV_ROUND_UP(new_size, span) ||
        (index < s->l1_size &&
         (s->l1_table[index] & QCOW2_L1E_OFFSET_MASK))) {
        return 0;
    }
    int ret = qcow2_mark_dirty_locked(bs);
    if (ret == 0) {
        ret = qcow2_get_l2_for_write_locked(bs, index, &table);
    }
    if (ret == 0 && table) {
        qcow2_cache_put(s->l2_cache, table);
    }
    return ret;
}

int qcow2_shrink_release(BlockNode *bs, uint64_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    BlockDiscardMode saved = qcow2_punch_begin(bs);
    int ret;
    {
        LOCK_GUARD(&s->lock);
        ret = keep_last_l2_locked(bs, new_size, block_node_size(bs));
    }
    if (ret == 0) {
        ret = qcow2_discard_beyond(bs, new_size);
    }
    if (ret == 0) {
        LOCK_GUARD(&s->lock);
        ret = release_locked(bs, new_size);
    }
    qcow2_punch_end(bs, saved);
    return ret;
}

/* What QEMU requires before it throws the whole layout away: nothing
 * but L1 and L2 tables keeps clusters (no snapshots, bitmaps, external
 * data file), and header, refcount table, one refcount block and the L1
 * table are counted by that one block. */
bool qcow2_can_empty_completely(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l1_clusters = DIV_ROUND_UP((uint64_t)s->l1_size * 8,
                                        s->cluster_size);
    return s->header.version >= 3 && s->header.nb_snapshots == 0 &&
           !s->header.has_bitmaps_ext && !s->header.data_file &&
           s->header.crypt_method == QCOW2_CRYPT_NONE &&
           3 + l1_clusters <= s->refblock_entries;
}

static int write_incompat_locked(BlockNode *bs, uint64_t bits)
{
    uint64_t be = htobe64(bits);
    int ret = qcow2_write_meta_locked(bs, 72, 8, &be, QCOW2_META_HEADER);
    return ret < 0 ? ret : block_flush(bs->file);
}

/* Header, refcount table (cluster 1), refcount block (cluster 2) and
 * the L1 table (from cluster 3), written under the dirty bit so that a
 * crash in between leaves an image that is repaired at open.  The
 * structures are written in QEMU's order, with QEMU's debug events, so
 * that a failure at any point leaves what QEMU leaves.  *torn is true
 * from the first write over the old layout until the new one is whole. */
static int empty_completely_locked(BlockNode *bs, bool *torn)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t l1_clusters = DIV_ROUND_UP((uint64_t)s->l1_size * 8, cs);
    uint64_t incompat = s->header.incompatible_features;

    int ret = qcow2_flush_caches_locked(bs);
    if (ret < 0) {
        return ret;
    }
    qcow2_cache_clear(s->l2_cache);
    qcow2_cache_clear(s->refblock_cache);
    ret = write_incompat_locked(bs, incompat | QCOW2_INCOMPAT_DIRTY);
    if (ret == 0) {
        *torn = true;
        block_debug_event(bs->file, BLKDBG_L1_UPDATE);
        ret = block_write_zeroes(bs->file, s->l1_table_offset,
                                 l1_clusters * cs, 0);
    }
    if (ret == 0) {
        block_debug_event(bs->file, BLKDBG_EMPTY_IMAGE_PREPARE);
        ret = block_write_zeroes(bs->file, cs, (2 + l1_clusters) * cs, 0);
    }
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret < 0) {
        return ret;
    }
    block_debug_event(bs->file, BLKDBG_L1_UPDATE);
    block_debug_event(bs->file, BLKDBG_REFTABLE_UPDATE);

    /* l1_table_offset, refcount_table_offset, refcount_table_clusters. */
    uint8_t fields[20];
    uint64_t v = htobe64(3 * cs);
    memcpy(fields, &v, 8);
    v = htobe64(cs);
    memcpy(fields + 8, &v, 8);
    uint32_t one = htobe32(1);
    memcpy(fields + 16, &one, 4);
    ret = block_write(bs->file, 40, sizeof(fields), fields, 0);
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret == 0) {
        block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC);
        v = htobe64(2 * cs);
        ret = block_write(bs->file, cs, 8, &v, 0);
    }
    if (ret == 0) {
        /* QEMU counts the new layout through its allocator, which looks
         * the refcount block up and writes it back. */
        block_debug_event(bs->file, BLKDBG_CLUSTER_ALLOC);
        block_debug_event(bs->file, BLKDBG_REFBLOCK_LOAD);
        block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC);
        block_debug_event(bs->file, BLKDBG_REFBLOCK_LOAD);
        block_debug_event(bs->file, BLKDBG_REFBLOCK_UPDATE_PART);
        CLEANUP_FREE void *rb = calloc(1, cs);
        if (!rb) {
            return -ENOMEM;
        }
        for (uint64_t i = 0; i < 3 + l1_clusters; i++) {
            qcow2_refblock_set(rb, i, s->refcount_order, 1);
        }
        ret = block_write(bs->file, 2 * cs, cs, rb, 0);
    }
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret == 0) {
        ret = write_incompat_locked(bs, incompat & ~QCOW2_INCOMPAT_DIRTY);
    }
    if (ret == 0) {
        *torn = false;
    }
    if (ret == 0 && !block_node_is_block_device(bs->file)) {
        Error *err = NULL;
        if (!block_truncate(bs->file, (3 + l1_clusters) * cs, false,
                            PREALLOC_OFF, &err)) {
            ret = -EIO;
            error_free(err);
        }
    }
    return ret;
}

int qcow2_make_completely_empty(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;
    bool torn = false;
    {
        LOCK_GUARD(&s->lock);
        ret = empty_completely_locked(bs, &torn);
    }
    if (ret < 0 && torn) {
        /* Half the old layout and half the new one: nothing in memory
         * describes the file any more, and the file may not be readable
         * (the error).  The node stops here, as QEMU ejects it; the
         * dirty bit has the image repaired at its next open. */
        atomic_store(&s->broken, true);
        return ret;
    }
    if (ret < 0) {
        return ret;
    }
    /* Every table moved: read the new layout back into the driver. */
    Error *err = NULL;
    if (!qcow2_reload_metadata(bs, &err)) {
        log_error("qcow2: %s: %s", bs->filename, error_get_pretty(err));
        error_free(err);
        atomic_store(&s->broken, true);
        return ret < 0 ? ret : -EIO;
    }
    return ret;
}
