/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - changing the graph while I/O runs: swapping or dropping a
 * node's backing child (a stream job finishing, a snapshot).
 *
 * Who reads a backing link, and why that is safe:
 *  - the data path (a format driver reading through to its backing
 *    node, block_read_backing) runs inside a request counted in flight on
 *    the node whose link it reads;
 *  - a block status walk counts itself in flight on every node whose
 *    link it reads, until it returns (status.c);
 *  - the main thread (QMP queries, filenames) is where swaps run.
 * So a swap drains the node -- waits until nothing is in flight on it
 * and holds new requests at its gate -- and only then changes the
 * pointer, under the graph lock so that graph listings see either the
 * old or the new link.  The old child's reference is dropped after the
 * drain ends and outside the lock: it may be the last one, and closing
 * a node drains it and takes the graph lock itself.
 */
#include <string.h>

#include "block/block_core.h"

/* True when bs is reachable from start through file or backing links:
 * making start a child of bs would then close a cycle. */
static bool reaches(const BlockNode *start, const BlockNode *bs, int depth)
{
    if (!start || depth > 2 * BLOCK_MAX_BACKING_DEPTH) {
        return start != NULL;   /* too deep to be a valid graph: refuse */
    }
    return start == bs || reaches(start->backing, bs, depth + 1) ||
           reaches(start->file, bs, depth + 1);
}

bool block_node_set_backing(BlockNode *bs, BlockNode *backing, Error **errp)
{
    if (!bs->drv->supports_backing) {
        error_setg(errp, "Driver '%s' of node '%s' does not support backing "
                   "files", bs->drv->format_name, block_node_name(bs));
        return false;
    }
    if (backing && reaches(backing, bs, 0)) {
        error_setg(errp, "Making '%s' a backing child of '%s' would create a "
                   "cycle", block_node_name(backing), block_node_name(bs));
        return false;
    }
    if (backing == bs->backing) {
        return true;
    }
    if (backing) {
        block_node_attach_child(backing);
    }
    block_drain_begin(bs);
    BlockNode *old;
    block_graph_wrlock();
    old = bs->backing;
    bs->backing = backing;
    block_graph_unlock();
    block_drain_end(bs);
    if (old) {
        block_node_detach_child(old);
    }
    block_refresh_filename(bs);
    return true;
}
