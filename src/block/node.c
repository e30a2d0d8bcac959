/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - what users of the block layer may know about a node.
 *
 * BlockNode is opaque outside src/block/: QMP, /metrics, the NBD server
 * and the tools read a node through these, and ask for its driver's
 * traits instead of comparing driver names.
 */
#include <errno.h>
#include <stdatomic.h>

#include "block/block_int.h"

const char *block_node_filename(const BlockNode *bs)
{
    return bs->filename;
}

bool block_node_read_only(const BlockNode *bs)
{
    return bs->read_only;
}

bool block_node_cache_direct(const BlockNode *bs)
{
    return bs->cache_direct;
}

bool block_node_no_flush(const BlockNode *bs)
{
    return bs->no_flush;
}

BlockNode *block_node_file(const BlockNode *bs)
{
    return bs->file;
}

BlockNode *block_node_backing(const BlockNode *bs)
{
    return bs->backing;
}

const char *block_node_backing_file(const BlockNode *bs)
{
    return bs->backing_file;
}

const char *block_node_backing_format(const BlockNode *bs)
{
    return bs->backing_format;
}

bool block_node_in_use(const BlockNode *bs)
{
    return atomic_load(&((BlockNode *)bs)->refcnt) > 1;
}

bool block_node_is_protocol(const BlockNode *bs)
{
    return bs->drv->is_protocol;
}

bool block_node_is_filter(const BlockNode *bs)
{
    return bs->drv->is_filter;
}

bool block_node_has_metadata(const BlockNode *bs)
{
    return bs->drv->has_metadata;
}

bool block_node_is_block_device(BlockNode *bs)
{
    return bs->drv->is_block_device && bs->drv->is_block_device(bs);
}

bool block_node_is_probe_fallback(const BlockNode *bs)
{
    return bs->drv->probe_fallback;
}

uint32_t block_node_cluster_size(BlockNode *bs)
{
    /* A filter has its child's clusters (QEMU's bdrv_get_info). */
    while (!bs->drv->get_cluster_size && bs->drv->is_filter && bs->file) {
        bs = bs->file;
    }
    return bs->drv->get_cluster_size ? bs->drv->get_cluster_size(bs) : 0;
}

json_t *block_node_specific_info(BlockNode *bs)
{
    return bs->drv->get_specific_info ? bs->drv->get_specific_info(bs) : NULL;
}

int64_t block_node_bitmaps_copy_size(BlockNode *bs, uint64_t cluster_size)
{
    return bs->drv->bitmaps_copy_size
               ? bs->drv->bitmaps_copy_size(bs, cluster_size)
               : -ENOTSUP;
}

bool block_node_has_image_info(BlockNode *bs)
{
    if (bs->drv->no_image_info) {
        return false;
    }
    /* Nodes without metadata of their own answer with their file's. */
    if (bs->file && !bs->drv->has_metadata) {
        return block_node_has_image_info(bs->file);
    }
    return true;
}

bool block_node_is_dirty(BlockNode *bs)
{
    return bs->drv->is_dirty && bs->drv->is_dirty(bs);
}

json_t *block_node_specific_stats(BlockNode *bs)
{
    return bs->drv->get_specific_stats ? bs->drv->get_specific_stats(bs)
                                       : NULL;
}

struct BlockAcct *block_node_acct(BlockNode *bs)
{
    return bs->acct;
}

uint64_t block_node_write_threshold(const BlockNode *bs)
{
    return atomic_load(&((BlockNode *)bs)->write_threshold);
}

void block_node_set_write_threshold(BlockNode *bs, uint64_t threshold)
{
    atomic_store(&bs->write_threshold, threshold);
}

uint64_t block_node_wr_highest_offset(const BlockNode *bs)
{
    return atomic_load(&((BlockNode *)bs)->wr_highest_offset);
}
