/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the copy-on-read filter (QEMU's "copy-on-read" driver).
 *
 * Placed above a node with a backing chain (an overlay on a template),
 * it makes every read copy what it reads from the chain into the node,
 * so the data the guest touches becomes local as a side effect.
 * "bottom" names the lowest node of the chain whose data is copied;
 * data below it stays where it is.  Writes and everything else pass
 * through unchanged.  The copy itself is block_copy_on_read(), which
 * keeps concurrent writes from being overwritten with stale data.
 */
#include <errno.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/keyval.h"

typedef struct CorState {
    BlockNode *base;          /* below bottom: not copied from (no ref) */
    bool enabled;             /* copy-on-read enabled on bs->file */
    atomic_bool passive;      /* reads pass through without a copy */
} CorState;

static bool cor_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    CorState *s = bs->opaque;
    const char *name = NULL;
    if (!opt_get_str(opts, "bottom", NULL, &name, errp)) {
        return false;
    }
    CLEANUP_FREE char *bottom_name = name ? strdup(name) : NULL;
    json_object_del(opts, "bottom");
    /* As QEMU: the child first, so that bottom may be a node its
     * opening created. */
    bs->file = block_open_child(bs, opts, "file", flags, errp);
    if (!bs->file) {
        return false;
    }
    BlockNode *bottom = NULL;
    if (bottom_name) {
        bottom = block_node_find(bottom_name);
        if (!bottom) {
            error_setg(errp, "Bottom node '%s' not found", bottom_name);
            return false;
        }
        if (bottom->drv->is_filter) {
            error_setg(errp, "Bottom node '%s' is a filter", bottom_name);
            return false;
        }
    }
    if (bottom) {
        /* bottom must be in the file child's chain (the child itself:
         * nothing below it is copied). */
        BlockNode *n = bs->file;
        while (n && n != bottom) {
            n = n->backing;
        }
        if (!n) {
            error_setg(errp, "Bottom node '%s' is not a backing image of "
                       "'%s'", bottom_name, block_node_name(bs->file));
            return false;
        }
        s->base = bottom->backing;
    }
    atomic_store(&bs->total_size, block_node_size(bs->file));
    bs->request_alignment = bs->file->request_alignment;
    bs->max_transfer = bs->file->max_transfer;
    if (!bs->read_only && !bs->file->read_only) {
        block_cor_enable(bs->file);
        s->enabled = true;
    }
    return true;
}

static void cor_close(BlockNode *bs)
{
    CorState *s = bs->opaque;
    if (s->enabled) {
        block_cor_disable(bs->file);
        s->enabled = false;
    }
}

static int cor_pread(BlockNode *bs, uint64_t offset, uint64_t bytes,
                     void *buf, int flags)
{
    CorState *s = bs->opaque;
    if (s->enabled && !atomic_load_explicit(&s->passive,
                                            memory_order_relaxed)) {
        int ret = block_copy_on_read(bs->file, s->base, offset, bytes, NULL);
        if (ret < 0) {
            return ret;
        }
    }
    return block_read(bs->file, offset, bytes, buf, flags);
}

static int cor_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                      const void *buf, int flags)
{
    return block_write(bs->file, offset, bytes, buf, flags);
}

static int cor_pwrite_zeroes(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             int flags)
{
    return block_write_zeroes(bs->file, offset, bytes, flags);
}

static int cor_pdiscard(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    return block_discard(bs->file, offset, bytes);
}

static int cor_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                            uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    /* A filter: the content is the child's, at the same offsets. */
    int ret = block_status(bs->file, offset, bytes, pnum, map, file);
    if (ret >= 0 && !(ret & BLOCK_STATUS_OFFSET_VALID) && map && file) {
        *map = offset;
        *file = bs->file;
        ret |= BLOCK_STATUS_OFFSET_VALID;
    }
    return ret;
}

static int64_t cor_refresh_size(BlockNode *bs)
{
    int64_t r = block_refresh_size(bs->file);
    if (r >= 0) {
        atomic_store(&bs->total_size, block_node_size(bs->file));
    }
    return r;
}

static bool cor_truncate(BlockNode *bs, uint64_t size, bool exact,
                         PreallocMode prealloc, Error **errp)
{
    if (!block_truncate(bs->file, size, exact, prealloc, errp)) {
        return false;
    }
    atomic_store(&bs->total_size, block_node_size(bs->file));
    return true;
}

void block_cor_filter_set_copying(BlockNode *filter, bool copying)
{
    if (filter->drv == &bdrv_copy_on_read) {
        CorState *s = filter->opaque;
        atomic_store(&s->passive, !copying);
    }
}

static const char *const cor_strong_options[] = { "bottom", NULL };

const BlockDriver bdrv_copy_on_read = {
    .format_name = "copy-on-read",
    .state_size = sizeof(CorState),
    .is_filter = true,
    .filter_extra_perm = BLOCK_PERM_WRITE_UNCHANGED,
    .strong_options = cor_strong_options,
    .open = cor_open,
    .close = cor_close,
    .pread = cor_pread,
    .pwrite = cor_pwrite,
    .pwrite_zeroes = cor_pwrite_zeroes,
    .pdiscard = cor_pdiscard,
    .block_status = cor_block_status,
    .refresh_size = cor_refresh_size,
    .truncate = cor_truncate,
};
