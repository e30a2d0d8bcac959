/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - putting an overlay on top of a running node (blockdev-snapshot)
 * and taking it away again when a transaction fails.
 *
 * The overlay first gets the node as its backing child; until its
 * parents move, nothing reads the overlay, so the order is safe.  Then
 * every parent of the node moves to the overlay (block_node_replace:
 * each export or job waits until none of its requests runs on the old
 * node, each parent node is drained while its link changes).  A
 * request is served either wholly by the old top or wholly by the new
 * one, so a client never sees an error and a write acknowledged before
 * the move is in the node, which the overlay reads through.
 */
#include <stdlib.h>

#include "block/block_core.h"
#include "block/user.h"

typedef struct Readers {
    BlockNode *bs;
    bool found;
} Readers;

static void user_reads(BlockUser *u, void *opaque)
{
    Readers *r = opaque;
    /* Every user kind reads through its node (exports, jobs, tools);
     * the permission set is the user's business, the link is enough. */
    if (block_user_node(u) == r->bs) {
        r->found = true;
    }
}

struct BlockQuiesce {
    BlockUser **users;
    size_t n, cap;
};

static void quiesce_one(BlockUser *u, void *opaque)
{
    BlockQuiesce *q = opaque;
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 16;
        BlockUser **p = realloc(q->users, cap * sizeof(*p));
        if (!p) {
            return;     /* left running: the change is only less still */
        }
        q->users = p;
        q->cap = cap;
    }
    block_user_quiesce(u);
    q->users[q->n++] = u;
}

BlockQuiesce *block_quiesce_all_users(void)
{
    BlockQuiesce *q = calloc(1, sizeof(*q));
    if (!q) {
        return NULL;
    }
    /* Users are created and freed on the main thread, where this runs,
     * so the list holds until block_unquiesce_all_users. */
    block_user_foreach(BLOCK_USER_EXPORT, quiesce_one, q);
    block_user_foreach(BLOCK_USER_JOB, quiesce_one, q);
    block_user_foreach(BLOCK_USER_OTHER, quiesce_one, q);
    return q;
}

void block_unquiesce_all_users(BlockQuiesce *q)
{
    if (!q) {
        return;
    }
    for (size_t i = q->n; i-- > 0;) {
        block_user_unquiesce(q->users[i]);
    }
    free(q->users);
    free(q);
}

bool block_node_has_readers(BlockNode *bs)
{
    if (__atomic_load_n(&bs->parents, __ATOMIC_SEQ_CST) > 0) {
        return true;
    }
    Readers r = { .bs = bs };
    block_user_foreach(BLOCK_USER_EXPORT, user_reads, &r);
    block_user_foreach(BLOCK_USER_JOB, user_reads, &r);
    block_user_foreach(BLOCK_USER_OTHER, user_reads, &r);
    return r.found;
}

void block_node_make_read_only(BlockNode *bs)
{
    if (bs->read_only) {
        return;
    }
    block_drain_begin(bs);
    if (bs->drv->make_read_only) {
        bs->drv->make_read_only(bs);
    }
    bs->read_only = true;
    block_drain_end(bs);
    /* The file below: it loses the write permissions bs asked of it.  A
     * child opened with bs (an implicit node) becomes read-only with it,
     * one the user opened by name keeps its own setting, as QEMU's
     * reopen treats the children that inherit their options. */
    BlockNode *f = bs->file;
    if (f && !f->read_only && f->drv->make_read_only &&
        __atomic_load_n(&f->parents, __ATOMIC_SEQ_CST) == 1) {
        block_drain_begin(f);
        f->drv->make_read_only(f);
        if (f->implicit_name) {
            f->read_only = true;
        }
        block_drain_end(f);
    }
}

bool block_node_supports_backing(const BlockNode *bs)
{
    return bs->drv->supports_backing;
}

bool block_node_append(BlockNode *overlay, BlockNode *base, Error **errp)
{
    if (!block_node_set_backing(overlay, base, errp)) {
        return false;
    }
    if (!block_node_replace(base, overlay, errp)) {
        block_node_set_backing(overlay, NULL, NULL);
        return false;
    }
    return true;
}

void block_node_unappend(BlockNode *overlay, BlockNode *base)
{
    /* base stays alive through its other holders (the monitor, or the
     * action's reference) while overlay lets go of it. */
    block_node_ref(base);
    if (!block_node_replace(overlay, base, NULL)) {
        /* Moving back users that were on base a moment ago takes only
         * permissions they held there; nothing else can fail. */
    }
    block_node_set_backing(overlay, NULL, NULL);
    block_node_unref(base);
}
