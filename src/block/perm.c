/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - users' permissions on nodes, as QEMU's BlockBackend perms.
 *
 * QEMU computes every node's permissions from its parents; what other
 * processes see are the lock bytes the file nodes at the bottom take.
 * strata keeps the part that shows there: a user's permissions go down
 * through nodes that pass them on unchanged (raw, filters) to the file
 * node, which adds them to its locks.  A metadata format (qcow2) stops
 * them: it already takes what its own writes need and forbids others
 * to write or resize, as QEMU's qcow2 does.
 */
#include "block/block_core.h"

/* The protocol node that enforces a user's permissions, or NULL. */
static BlockNode *perm_target(BlockNode *bs)
{
    while (bs && !bs->drv->is_protocol) {
        if (bs->drv->has_metadata) {
            return NULL;
        }
        bs = bs->file;
    }
    return bs && bs->drv->user_perm ? bs : NULL;
}

bool block_node_add_perm(BlockNode *bs, uint64_t perm, uint64_t shared,
                         Error **errp)
{
    BlockNode *target = perm_target(bs);
    return !target || target->drv->user_perm(target, perm & BLOCK_PERM_ALL,
                                             shared & BLOCK_PERM_ALL, 1,
                                             errp);
}

void block_node_del_perm(BlockNode *bs, uint64_t perm, uint64_t shared)
{
    BlockNode *target = perm_target(bs);
    if (target) {
        (void)target->drv->user_perm(target, perm & BLOCK_PERM_ALL,
                                     shared & BLOCK_PERM_ALL, -1, NULL);
    }
}
