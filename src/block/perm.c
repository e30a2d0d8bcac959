/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - users' permissions on nodes, as QEMU's BlockBackend perms.
 *
 * QEMU computes every node's permissions from its parents; what other
 * processes see are the lock bytes the file nodes at the bottom take.
 * strata keeps the part that shows there: a user's permissions go down
 * through nodes that pass them on unchanged (raw, filters) to the file
 * node, which adds them to its locks; a quorum passes them to each of
 * its children.  A metadata format (qcow2) stops
 * them: it already takes what its own writes need and forbids others
 * to write or resize, as QEMU's qcow2 does.
 */
#include <stdio.h>

#include "block/block_core.h"

/* Adds (count 1) or removes (count -1) a user's permissions on the
 * protocol nodes that enforce them below bs: down the file links, and
 * into every child of a node with a list of them (quorum), as that node
 * passes them on.  Adding fails, taking nothing, on a conflict. */
static bool pass_down(BlockNode *bs, uint64_t perm, uint64_t shared,
                      int count, Error **errp)
{
    while (bs && !bs->drv->is_protocol) {
        if (bs->drv->has_metadata) {
            return true;
        }
        if (bs->drv->list_child_perm) {
            uint64_t np, ns;
            bs->drv->list_child_perm(bs, perm, shared, &np, &ns);
            BlockNode *c;
            for (int i = 0; (c = bs->drv->list_child(bs, i, NULL)); i++) {
                if (!pass_down(c, np, ns, count, errp)) {
                    while (--i >= 0) {
                        (void)pass_down(bs->drv->list_child(bs, i, NULL), np,
                                        ns, -count, NULL);
                    }
                    return false;
                }
            }
            return true;
        }
        bs = bs->file;
    }
    return !bs || !bs->drv->user_perm ||
           bs->drv->user_perm(bs, perm, shared, count, errp);
}

bool block_node_add_perm(BlockNode *bs, uint64_t perm, uint64_t shared,
                         Error **errp)
{
    perm &= BLOCK_PERM_ALL;
    shared &= BLOCK_PERM_ALL;
    /* Inside the process first (the other users of the node), then the
     * other processes (lock bytes). */
    if (!block_perm_record_add(bs, perm, shared, errp)) {
        return false;
    }
    if (!pass_down(bs, perm, shared, 1, errp)) {
        block_perm_record_del(bs, perm, shared);
        return false;
    }
    return true;
}

void block_node_del_perm(BlockNode *bs, uint64_t perm, uint64_t shared)
{
    block_perm_record_del(bs, perm & BLOCK_PERM_ALL, shared & BLOCK_PERM_ALL);
    (void)pass_down(bs, perm & BLOCK_PERM_ALL, shared & BLOCK_PERM_ALL, -1,
                    NULL);
}

typedef struct ResizeCheck {
    BlockNode *child;         /* the node whose parents are looked at */
    BlockNode *via;           /* the parent on the resize's own path */
    BlockNode *unsharing;     /* a metadata format on child, or NULL */
    bool is_backing;          /* child is somebody's backing */
} ResizeCheck;

static bool find_resize_conflict(BlockNode *n, void *opaque)
{
    ResizeCheck *c = opaque;
    if (n->backing == c->child) {
        c->is_backing = true;
    }
    if (n != c->via && n->file == c->child && n->drv->has_metadata &&
        !c->unsharing) {
        c->unsharing = n;
    }
    return true;
}

bool block_node_check_resize(BlockNode *bs, Error **errp)
{
    ResizeCheck c = { .child = bs };
    block_graph_foreach(find_resize_conflict, &c);
    if (c.is_backing) {
        /* QEMU's op blocker on backing nodes; its message names the
         * (absent) device. */
        error_setg(errp, "Device '(null)' is in use");
        return false;
    }
    if (block_node_read_only(bs)) {
        error_setg(errp, "Block node is read-only");
        return false;
    }
    /* The resize goes down through nodes that pass it on (raw, filters)
     * to the storage; a metadata format sitting on any node of that path
     * has its view of the file changed under it, and unshares 'resize'
     * (QEMU's permission rules). */
    for (BlockNode *n = bs, *via = NULL; n; via = n, n = n->file) {
        c = (ResizeCheck){ .child = n, .via = via };
        block_graph_foreach(find_resize_conflict, &c);
        /* A block device's size is the device's: "resizing" its node
         * only adopts the size the device has now (after lvextend),
         * which the format above must see -- strata-thinp relies on it.
         * QEMU refuses it as a conflict; strata lets it through. */
        if (c.unsharing && !block_node_is_block_device(n)) {
            char who[256];
            if (via) {
                snprintf(who, sizeof(who), "node '%s' (uses node '%s' as "
                         "'file' child)", block_node_name(via),
                         block_node_name(n));
            } else {
                snprintf(who, sizeof(who), "an unnamed block device (uses "
                         "node '%s' as 'root' child)", block_node_name(n));
            }
            error_setg(errp, "Permission conflict on node '%s': permissions "
                       "'resize' are both required by %s and unshared by "
                       "node '%s' (uses node '%s' as 'file' child).",
                       block_node_name(n), who,
                       block_node_name(c.unsharing), block_node_name(n));
            return false;
        }
        if (n->drv->has_metadata || n->drv->is_protocol) {
            break;    /* the format resizes its file itself */
        }
    }
    return true;
}
