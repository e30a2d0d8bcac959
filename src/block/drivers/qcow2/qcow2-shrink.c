/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - giving the space of a shrunk qcow2 image back, as QEMU 7.2's
 * qcow2_co_truncate does after discarding the guest clusters past the
 * new end: L2 tables wholly past it and refcount blocks that count
 * nothing but themselves are freed, every freed host cluster is punched
 * out of the file, and the file is cut after the last cluster still in
 * use.  On a thin volume that is the point of shrinking.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "util/cleanup.h"
#include "util/error.h"

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
        int ret = qcow2_write_meta_locked(bs, s->l1_table_offset + i * 8, 8,
                                          &zero, QCOW2_META_L1);
        if (ret == 0) {
            ret = block_flush(bs->file);
        }
        if (ret == 0) {
            ret = qcow2_update_refcount_locked(bs, l2, s->cluster_size, -1);
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
            ret = qcow2_update_refcount_locked(bs, rb, s->cluster_size, -1);
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

int qcow2_shrink_release(BlockNode *bs, uint64_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    /* QEMU discards what a shrink frees in the file whatever the
     * image's discard option says. */
    BlockDiscardMode saved = bs->file->discard;
    bs->file->discard = BLOCK_DISCARD_UNMAP;
    pthread_mutex_lock(&s->lock);
    s->punch_freed = true;
    pthread_mutex_unlock(&s->lock);

    int ret = qcow2_discard_beyond(bs, new_size);
    if (ret == 0) {
        LOCK_GUARD(&s->lock);
        ret = release_locked(bs, new_size);
    }

    pthread_mutex_lock(&s->lock);
    s->punch_freed = false;
    pthread_mutex_unlock(&s->lock);
    bs->file->discard = saved;
    return ret;
}
