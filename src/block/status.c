/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - block status of one node and through a backing chain.
 *
 * A walk down a chain reads each node's backing link.  The link may be
 * swapped (block_node_set_backing) while the walk runs, so the walk
 * counts itself in flight on every node it has read the link of and
 * keeps those counts until it returns: a swap drains the node first and
 * so waits for the walk, and a walk that reaches a node being swapped
 * waits at its drain gate and then reads the new link.  The per-node
 * status call inside the walk takes no second count on the same node (a
 * nested count would deadlock against a drain that began in between).
 */
#include <errno.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"

/* block_status without the drain gate: the caller is in flight on bs. */
static int status_ungated(BlockNode *bs, uint64_t offset, uint64_t bytes,
                          uint64_t *pnum, uint64_t *map, BlockNode **file,
                          bool gate)
{
    uint64_t size = block_node_size(bs);
    uint64_t local_map = 0;
    BlockNode *local_file = NULL;

    if (offset > INT64_MAX || bytes > INT64_MAX) {
        return -EINVAL;
    }
    if (bytes == 0 || offset >= size) {
        return -EIO;
    }
    bytes = MIN(bytes, size - offset);

    if (gate) {
        block_io_begin(bs);
    }
    int ret;
    uint64_t n = 0;
    if (bs->drv->block_status) {
        ret = bs->drv->block_status(bs, offset, bytes, &n, &local_map,
                                    &local_file);
        if (ret >= 0 && (n == 0 || n > bytes)) {
            /* A driver reporting no progress would loop its callers. */
            ret = n == 0 ? -EIO : ret;
            n = MIN(n, bytes);
        }
    } else {
        n = bytes;
        ret = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED;
        if (bs->drv->is_format && bs->file) {
            ret |= BLOCK_STATUS_OFFSET_VALID;
            local_map = offset;
            local_file = bs->file;
        } else if (bs->drv->is_protocol) {
            ret |= BLOCK_STATUS_OFFSET_VALID;
            local_map = offset;
            local_file = bs;
        }
    }
    /* As QEMU: data or zeroes described by this layer are allocated in
     * it; an unallocated run of a node that could have a backing file
     * but has none reads as zeroes.  The backing link is read while
     * still in flight on bs, so a swap cannot free it under us. */
    if (ret >= 0) {
        if (ret & (BLOCK_STATUS_DATA | BLOCK_STATUS_ZERO)) {
            ret |= BLOCK_STATUS_ALLOCATED;
        } else if (bs->drv->supports_backing &&
                   (!bs->backing ||
                    offset >= block_node_size(bs->backing))) {
            /* Past the end of a shorter backing node reads as zeroes
             * too; still not allocated here (qemu-img map: depth 0). */
            ret |= BLOCK_STATUS_ZERO;
        }
    }
    if (gate) {
        block_io_end(bs);
    }
    if (ret < 0) {
        return ret;
    }
    if (offset + n == size) {
        ret |= BLOCK_STATUS_EOF;
    }
    if (!(ret & BLOCK_STATUS_OFFSET_VALID)) {
        local_map = 0;
        local_file = NULL;
    }
    *pnum = n;
    if (map) {
        *map = local_map;
    }
    if (file) {
        *file = local_file;
    }
    return ret;
}

int block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                 uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    return status_ungated(bs, offset, bytes, pnum, map, file, true);
}

static int walk_chain(BlockNode *bs, BlockNode *base, uint64_t offset,
                      uint64_t bytes, uint64_t *pnum, uint64_t *map,
                      BlockNode **file, int *depth, BlockNode **held,
                      int *nheld);

int block_status_above(BlockNode *bs, BlockNode *base, uint64_t offset,
                       uint64_t bytes, uint64_t *pnum, uint64_t *map,
                       BlockNode **file, int *depth)
{
    BlockNode *held[BLOCK_MAX_BACKING_DEPTH + 1];
    int nheld = 0;
    int ret = walk_chain(bs, base, offset, bytes, pnum, map, file, depth,
                         held, &nheld);
    while (nheld > 0) {
        block_io_end(held[--nheld]);
    }
    return ret;
}

/* Counts the walk in flight on cur; false when the chain is longer than
 * a chain can be (a corrupted graph). */
static bool hold(BlockNode *cur, BlockNode **held, int *nheld)
{
    if (*nheld > BLOCK_MAX_BACKING_DEPTH) {
        return false;
    }
    block_io_begin(cur);
    held[(*nheld)++] = cur;
    return true;
}

static int walk_chain(BlockNode *bs, BlockNode *base, uint64_t offset,
                      uint64_t bytes, uint64_t *pnum, uint64_t *map,
                      BlockNode **file, int *depth, BlockNode **held,
                      int *nheld)
{
    uint64_t size = block_node_size(bs);
    if (offset > INT64_MAX || bytes > INT64_MAX) {
        return -EINVAL;
    }
    if (bytes == 0 || offset >= size) {
        return -EIO;
    }
    bytes = MIN(bytes, size - offset);

    /* Filters (copy-on-read, blkdebug) are transparent here, as in QEMU:
     * the chain and its depths start at the node they filter. */
    while (bs->drv->is_filter && bs->file && bs != base) {
        if (bs->drv->filter_status_check) {
            int ret = bs->drv->filter_status_check(bs, offset, bytes);
            if (ret < 0) {
                return ret;
            }
        }
        bs = bs->file;
    }

    int d = 1;
    for (BlockNode *cur = bs; cur && cur != base; cur = cur->backing, d++) {
        if (!hold(cur, held, nheld)) {
            return -ELOOP;
        }
        if (cur != bs && offset >= block_node_size(cur)) {
            /* Past the end of a shorter backing node.  As QEMU, the
             * zeroes read there count as allocated in that short node:
             * it is the layer that decides the content (a longer node
             * below it is not read). */
            *pnum = bytes;
            if (map) {
                *map = 0;
            }
            if (file) {
                *file = cur;
            }
            if (depth) {
                *depth = d;
            }
            return BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED |
                   (offset + bytes == size ? BLOCK_STATUS_EOF : 0);
        }
        uint64_t n;
        uint64_t m = 0;
        BlockNode *f = NULL;
        int ret = status_ungated(cur, offset, bytes, &n, &m, &f, false);
        if (ret < 0) {
            return ret;
        }
        if (ret & BLOCK_STATUS_ALLOCATED) {
            *pnum = n;
            if (map) {
                *map = m;
            }
            if (file) {
                *file = f;
            }
            if (depth) {
                *depth = d;
            }
            /* EOF describes the top node, not the layer we found. */
            ret &= ~BLOCK_STATUS_EOF;
            if (offset + n == size) {
                ret |= BLOCK_STATUS_EOF;
            }
            return ret;
        }
        bytes = n;
        if (!cur->backing && !base) {
            break;
        }
        if (cur->backing == base) {
            /* Unallocated down to base: content comes from base, which
             * is not ours to describe. */
            *pnum = bytes;
            if (map) {
                *map = 0;
            }
            if (file) {
                *file = NULL;
            }
            if (depth) {
                *depth = 0;
            }
            return (ret & BLOCK_STATUS_ZERO) |
                   (offset + bytes == size ? BLOCK_STATUS_EOF : 0);
        }
    }
    *pnum = bytes;
    if (map) {
        *map = 0;
    }
    if (file) {
        *file = NULL;
    }
    if (depth) {
        *depth = 0;
    }
    return BLOCK_STATUS_ZERO | (offset + bytes == size ? BLOCK_STATUS_EOF : 0);
}

int block_read_backing(BlockNode *bs, uint64_t offset, uint64_t bytes,
                       void *buf)
{
    BlockNode *backing = bs->backing;
    if (!backing) {
        memset(buf, 0, bytes);
        return 0;
    }
    uint64_t bsize = block_node_size(backing);
    uint64_t n = offset >= bsize ? 0 : MIN(bytes, bsize - offset);
    if (n < bytes) {
        memset((char *)buf + n, 0, bytes - n);
    }
    return n ? block_read(backing, offset, n, buf, 0) : 0;
}
