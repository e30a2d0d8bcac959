/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - how much of its storage a node uses: the one "allocation"
 * that query-block-allocation and /metrics both report.
 *
 * A qcow2 image grows only at its end, so on a thin volume the highest
 * host offset in use is the allocation.  Writes move the protocol
 * node's wr_highest_offset; before the first write (right after a
 * restart, say) only the image's metadata knows where it ends, which the
 * format driver reads at open (get_image_end) and the core records on
 * the protocol node.  The size of the file is no measure: a block
 * device's is the volume's, and a thin-provisioning agent grows a
 * regular file ahead of the data.
 */
#include <stdatomic.h>
#include <sys/stat.h>

#include "block/block_core.h"
#include "util/cleanup.h"

/* The node whose storage holds bs's data: its protocol node, reached
 * through file children; the bottom node when there is none. */
static BlockNode *storage_node(BlockNode *bs)
{
    while (!bs->drv->is_protocol && bs->file) {
        bs = bs->file;
    }
    return bs;
}

void block_allocation_note_open(BlockNode *bs)
{
    if (bs->drv->get_image_end && bs->file) {
        block_atomic_max(&storage_node(bs->file)->image_end,
                   bs->drv->get_image_end(bs));
    }
}

void block_allocation_note_truncate(BlockNode *bs, uint64_t size)
{
    /* What was cut off is no longer allocated. */
    uint64_t cur = atomic_load(&bs->image_end);
    while (cur > size && !atomic_compare_exchange_weak(&bs->image_end, &cur,
                                                       size)) {
    }
}

uint64_t block_node_allocation(BlockNode *bs)
{
    BlockNode *proto = storage_node(bs);
    return MAX(atomic_load(&proto->wr_highest_offset),
               atomic_load(&proto->image_end));
}

/* The size of the storage under a protocol node.  A block device's node
 * takes the new size (it only changes when the volume is extended, and
 * a node that is smaller than its device refuses nothing but reads past
 * the old end).  A regular file's node is left alone: writes past its
 * end grow it concurrently, and storing a size read a moment earlier
 * would make a cluster just appended read back as zeroes. */
static int64_t protocol_physical(BlockNode *proto, bool block_device)
{
    if (block_device) {
        return block_refresh_size(proto);
    }
    struct stat st;
    if (proto->filename && stat(proto->filename, &st) == 0 &&
        S_ISREG(st.st_mode)) {
        return MAX(st.st_size, (int64_t)block_node_size(proto));
    }
    return (int64_t)block_node_size(proto);
}

void block_node_storage_info(BlockNode *bs, BlockStorageInfo *info)
{
    BlockNode *proto = storage_node(bs);
    info->allocation = block_node_allocation(proto);
    if (proto->drv->is_protocol) {
        info->block_device = block_node_is_block_device(proto);
        info->physical = protocol_physical(proto, info->block_device);
    } else {
        /* No storage of its own (a network client, say): report what
         * the node exposes. */
        info->block_device = false;
        info->physical = (int64_t)block_node_size(proto);
    }
}
