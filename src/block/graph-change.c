/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - changing the graph while I/O runs: swapping or dropping a
 * node's backing child (a stream job finishing, a snapshot), and moving
 * every parent of a node to another node (a filter inserted above a
 * node for a job's life, and taken out again).
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
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "block/user.h"

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

/* ---- replacing a node for all its parents ---- */

typedef struct Parents {
    BlockNode *old, *new;
    BlockUser **users;
    size_t nusers, cap_users;
    BlockNode **nodes;        /* with a reference each */
    size_t nnodes, cap_nodes;
    bool oom;
} Parents;

static bool grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) {
        return true;
    }
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, c * size);
    if (!p) {
        return false;
    }
    *arr = p;
    *cap = c;
    return true;
}

static void collect_user(BlockUser *u, void *opaque)
{
    Parents *p = opaque;
    if (block_user_node(u) != p->old) {
        return;
    }
    if (!grow((void **)&p->users, &p->cap_users, p->nusers,
              sizeof(*p->users))) {
        p->oom = true;
        return;
    }
    p->users[p->nusers++] = u;
}

static bool collect_node(BlockNode *n, void *opaque)
{
    Parents *p = opaque;
    if (n == p->new || (n->file != p->old && n->backing != p->old)) {
        return true;
    }
    if (!grow((void **)&p->nodes, &p->cap_nodes, p->nnodes,
              sizeof(*p->nodes))) {
        p->oom = true;
        return false;
    }
    block_node_ref(n);
    p->nodes[p->nnodes++] = n;
    return true;
}

/* Points n's links to old at new, under n's drain and the graph lock,
 * as block_node_set_backing does. */
static void relink(BlockNode *n, BlockNode *old, BlockNode *new)
{
    int links = (n->file == old) + (n->backing == old);
    for (int i = 0; i < links; i++) {
        block_node_attach_child(new);
    }
    block_drain_begin(n);
    block_graph_wrlock();
    if (n->file == old) {
        n->file = new;
    }
    if (n->backing == old) {
        n->backing = new;
    }
    block_graph_unlock();
    block_drain_end(n);
    for (int i = 0; i < links; i++) {
        block_node_detach_child(old);
    }
    block_refresh_filename(n);
}

bool block_node_replace(BlockNode *old, BlockNode *new, Error **errp)
{
    Parents p = { .old = old, .new = new };
    /* Users are held by their owners on the main thread, where this
     * runs: the list needs no references. */
    block_user_foreach(BLOCK_USER_EXPORT, collect_user, &p);
    block_user_foreach(BLOCK_USER_JOB, collect_user, &p);
    block_user_foreach(BLOCK_USER_OTHER, collect_user, &p);
    block_graph_foreach(collect_node, &p);
    bool ok = !p.oom;
    if (!ok) {
        error_setg(errp, "Out of memory");
    }
    size_t moved = 0;
    for (; ok && moved < p.nusers; moved++) {
        ok = block_user_set_node(p.users[moved], new, errp);
    }
    if (!ok) {
        /* All or nothing: the users moved so far go back (their
         * permissions on old were theirs a moment ago). */
        while (moved-- > 0) {
            block_user_set_node(p.users[moved], old, NULL);
        }
    }
    for (size_t i = 0; i < p.nnodes; i++) {
        if (ok) {
            relink(p.nodes[i], old, new);
        }
        block_node_unref(p.nodes[i]);
    }
    free(p.users);
    free(p.nodes);
    return ok;
}
