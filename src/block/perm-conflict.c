/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - permission conflicts between the users of one node, inside
 * one process, as QEMU finds them.
 *
 * Lock bytes keep processes apart; inside the daemon two parents of the
 * same node share one file descriptor, so nothing but this check stops
 * a second qcow2 node from writing the file a first one already
 * allocates in (which corrupts both), or an export from writing under a
 * format.  Every parent link of a node carries QEMU's (perm, shared)
 * pair: a user's is what it asked for; a node's link to its child is
 * derived from what the node's own parents need, by the role of the
 * child (QEMU's bdrv_default_perms): a filter passes them on, a format
 * with metadata adds what its own writes need and shares neither write
 * nor resize, a backing link asks for consistent read at most.  A node
 * whose parent asks for something another parent does not share is a
 * conflict, reported in QEMU's words, newest parent first as QEMU walks
 * them.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"

/* A user's permissions on a node (block_node_add_perm). */
/* A user's permissions on a node (block_node_add_perm), or a named
 * parent's hold on it (block_perm_hold: a job on the nodes it works
 * on). */
struct PermRecord {
    BlockNode *bs;
    uint64_t perm;
    uint64_t shared;
    uint64_t seq;
    char *parent_desc;      /* NULL: "an unnamed block device" */
    char *role;             /* NULL: "root" */
    struct PermRecord *next;
};
typedef struct PermRecord PermRecord;

static void record_free(PermRecord *r)
{
    free(r->parent_desc);
    free(r->role);
    free(r);
}

static pthread_mutex_t records_lock = PTHREAD_MUTEX_INITIALIZER;
static PermRecord *records;
static _Atomic uint64_t perm_seq;

uint64_t block_perm_next_seq(void)
{
    return atomic_fetch_add(&perm_seq, 1) + 1;
}

/* ---- the graph as the check sees it ---- */

#define MAX_EDGES 64

typedef struct Edge {
    BlockNode *parent;      /* NULL: a user or a hold */
    const char *parent_desc;  /* a hold's parent, or NULL */
    const char *role;       /* "root", "file", "backing", "image" */
    uint64_t perm;
    uint64_t shared;
    uint64_t seq;           /* newer parents are looked at first */
} Edge;

/* The graph (a snapshot of the node list) with what is about to be added:
 * a link from a node being opened to an existing child, or a user. */
typedef struct GraphView {
    BlockNode **nodes;
    uint64_t *cum_perm;     /* memo of cumulative(), by node index */
    uint64_t *cum_shared;
    bool *cum_done;
    size_t n;
    BlockNode *link_parent;   /* pending link, or NULL */
    BlockNode *link_child;
    bool link_backing;
    const char *link_role;    /* the pending link is this list child */
    const PermRecord *extra;  /* pending user, or NULL */
} GraphView;

static bool collect_node(BlockNode *bs, void *opaque)
{
    GraphView *g = opaque;
    BlockNode **grown = realloc(g->nodes, (g->n + 1) * sizeof(*grown));
    if (!grown) {
        return false;
    }
    g->nodes = grown;
    g->nodes[g->n++] = bs;
    return true;
}

static size_t parent_edges(GraphView *g, BlockNode *bs, Edge *out);

/* What bs's parents together take and share (all when it has none). */
static void cumulative(GraphView *g, BlockNode *bs, uint64_t *perm,
                       uint64_t *shared)
{
    size_t idx = g->n;
    for (size_t i = 0; i < g->n; i++) {
        if (g->nodes[i] == bs) {
            idx = i;
            break;
        }
    }
    if (idx < g->n && g->cum_done[idx]) {
        *perm = g->cum_perm[idx];
        *shared = g->cum_shared[idx];
        return;
    }
    Edge e[MAX_EDGES];
    size_t n = parent_edges(g, bs, e);
    *perm = 0;
    *shared = BLOCK_PERM_ALL;
    for (size_t i = 0; i < n; i++) {
        *perm |= e[i].perm;
        *shared &= e[i].shared;
    }
    if (idx < g->n) {
        g->cum_perm[idx] = *perm;
        g->cum_shared[idx] = *shared;
        g->cum_done[idx] = true;
    }
}

/* The link from parent p to its child c (c is p's file or backing). */
static Edge child_link(GraphView *g, BlockNode *p, BlockNode *c,
                       bool backing)
{
    uint64_t pp, ps;
    Edge e = { .parent = p, .seq = p->perm_seq };
    cumulative(g, p, &pp, &ps);
    if (backing) {
        /* Backing files are only read; they may change under a parent
         * that copes with changing data. */
        e.role = "backing";
        e.perm = pp & BLOCK_PERM_CONSISTENT_READ;
        e.shared = (ps & BLOCK_PERM_WRITE)
                       ? BLOCK_PERM_WRITE | BLOCK_PERM_RESIZE : 0;
        e.shared |= BLOCK_PERM_CONSISTENT_READ | BLOCK_PERM_WRITE_UNCHANGED;
    } else if (p->drv->has_metadata) {
        /* The format reads its metadata always, writes and grows the
         * file whenever it is writable, and lets nobody else do either. */
        e.perm = pp | BLOCK_PERM_CONSISTENT_READ;
        if (!p->read_only) {
            e.perm |= BLOCK_PERM_WRITE | BLOCK_PERM_RESIZE;
        }
        if (e.perm & BLOCK_PERM_WRITE_UNCHANGED) {
            e.perm |= BLOCK_PERM_WRITE;
        }
        if (e.perm & BLOCK_PERM_WRITE) {
            e.perm |= BLOCK_PERM_RESIZE;
        }
        e.shared = ps & ~(uint64_t)(BLOCK_PERM_WRITE | BLOCK_PERM_RESIZE);
    } else {
        /* raw and the filters pass their parents' needs on. */
        e.perm = pp | p->drv->filter_extra_perm;
        e.shared = ps;
    }
    if (!backing) {
        e.role = p->drv->file_child_option ? p->drv->file_child_option
                                           : "file";
    }
    /* force-share on the child overrides what its parent nodes forbid
     * (not what its users forbid). */
    if (c->force_share) {
        e.shared = BLOCK_PERM_ALL;
    }
    return e;
}

/* The link from p to one of the children of its list (quorum). */
static Edge list_child_link(GraphView *g, BlockNode *p, const char *role)
{
    uint64_t pp, ps;
    Edge e = { .parent = p, .seq = p->perm_seq, .role = role };
    cumulative(g, p, &pp, &ps);
    p->drv->list_child_perm(p, pp, ps, &e.perm, &e.shared);
    return e;
}

static Edge record_edge(const PermRecord *r)
{
    return (Edge){ .role = r->role ? r->role : "root",
                   .parent_desc = r->parent_desc, .perm = r->perm,
                   .shared = r->shared, .seq = r->seq };
}

static size_t parent_edges(GraphView *g, BlockNode *bs, Edge *out)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n && n < MAX_EDGES; i++) {
        BlockNode *p = g->nodes[i];
        if (p->file == bs) {
            out[n++] = child_link(g, p, bs, false);
        }
        if (p->backing == bs && p->file != bs && n < MAX_EDGES) {
            out[n++] = child_link(g, p, bs, true);
        }
    }
    for (size_t i = 0; i < g->n && n < MAX_EDGES; i++) {
        BlockNode *p = g->nodes[i];
        const char *role = NULL;
        BlockNode *c;
        for (int k = 0; p->drv->list_child && n < MAX_EDGES &&
                        (c = p->drv->list_child(p, k, &role)); k++) {
            if (c == bs) {
                out[n++] = list_child_link(g, p, role);
            }
        }
    }
    if (g->link_child == bs && n < MAX_EDGES) {
        out[n++] = g->link_role
                       ? list_child_link(g, g->link_parent, g->link_role)
                       : child_link(g, g->link_parent, bs, g->link_backing);
    }
    for (const PermRecord *r = records; r && n < MAX_EDGES; r = r->next) {
        if (r->bs == bs) {
            out[n++] = record_edge(r);
        }
    }
    if (g->extra && g->extra->bs == bs && n < MAX_EDGES) {
        out[n++] = record_edge(g->extra);
    }
    return n;
}

/* ---- messages ---- */

static void perm_names(uint64_t perm, char *buf, size_t size)
{
    static const struct { uint64_t bit; const char *name; } names[] = {
        { BLOCK_PERM_CONSISTENT_READ, "consistent read" },
        { BLOCK_PERM_WRITE, "write" },
        { BLOCK_PERM_WRITE_UNCHANGED, "write unchanged" },
        { BLOCK_PERM_RESIZE, "resize" },
    };
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (perm & names[i].bit) {
            used += snprintf(buf + used, size - MIN(used, size), "%s%s",
                             used ? ", " : "", names[i].name);
            used = MIN(used, size);
        }
    }
}

static void describe(const Edge *e, BlockNode *child, char *buf, size_t size)
{
    if (e->parent) {
        snprintf(buf, size, "node '%s' (uses node '%s' as '%s' child)",
                 block_node_name(e->parent), block_node_name(child), e->role);
    } else if (e->parent_desc) {
        snprintf(buf, size, "%s (uses node '%s' as '%s' child)",
                 e->parent_desc, block_node_name(child), e->role);
    } else {
        snprintf(buf, size, "an unnamed block device (uses node '%s' as "
                 "'root' child)", block_node_name(child));
    }
}

static int newest_first(const void *a, const void *b)
{
    const Edge *x = a, *y = b;
    return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

/* Checks bs's parents against each other, then its children's. */
static bool check_down(GraphView *g, BlockNode *bs, Error **errp)
{
    Edge e[MAX_EDGES];
    size_t n = parent_edges(g, bs, e);
    qsort(e, n, sizeof(e[0]), newest_first);
    for (size_t a = 0; a < n; a++) {
        for (size_t b = 0; b < n; b++) {
            uint64_t bad = e[b].perm & ~e[a].shared;
            if (a == b || !bad) {
                continue;
            }
            char perms[80], required[256], unshared[256];
            perm_names(bad, perms, sizeof(perms));
            describe(&e[b], bs, required, sizeof(required));
            describe(&e[a], bs, unshared, sizeof(unshared));
            error_setg(errp, "Permission conflict on node '%s': permissions "
                       "'%s' are both required by %s and unshared by %s.",
                       block_node_name(bs), perms, required, unshared);
            return false;
        }
    }
    /* Then, as QEMU, whether the node can give what its parents take. */
    uint64_t perm, shared;
    cumulative(g, bs, &perm, &shared);
    if ((perm & (BLOCK_PERM_WRITE | BLOCK_PERM_WRITE_UNCHANGED)) &&
        bs->read_only) {
        error_setg(errp, "Block node is read-only");
        return false;
    }
    if (bs->file && !check_down(g, bs->file, errp)) {
        return false;
    }
    BlockNode *c;
    for (int k = 0; bs->drv->list_child &&
                    (c = bs->drv->list_child(bs, k, NULL)); k++) {
        if (!check_down(g, c, errp)) {
            return false;
        }
    }
    return !bs->backing || bs->backing == bs->file ||
           check_down(g, bs->backing, errp);
}

/* Checks the graph below top as it would be with g's pending link or
 * user.  Called with records_lock held. */
static bool check_locked(GraphView *g, BlockNode *top, Error **errp)
{
    block_graph_foreach(collect_node, g);
    g->cum_perm = calloc(g->n + 1, sizeof(*g->cum_perm));
    g->cum_shared = calloc(g->n + 1, sizeof(*g->cum_shared));
    g->cum_done = calloc(g->n + 1, sizeof(*g->cum_done));
    bool ok;
    if (!g->cum_perm || !g->cum_shared || !g->cum_done) {
        error_setg(errp, "Out of memory");
        ok = false;
    } else {
        ok = check_down(g, top, errp);
    }
    free(g->nodes);
    free(g->cum_perm);
    free(g->cum_shared);
    free(g->cum_done);
    return ok;
}

bool block_perm_check_link(BlockNode *parent, BlockNode *child, bool backing,
                           Error **errp)
{
    GraphView g = { .link_parent = parent, .link_child = child,
                    .link_backing = backing };
    LOCK_GUARD(&records_lock);
    return check_locked(&g, child, errp);
}

bool block_perm_check_list_link(BlockNode *parent, BlockNode *child,
                                const char *role, Error **errp)
{
    GraphView g = { .link_parent = parent, .link_child = child,
                    .link_role = role };
    LOCK_GUARD(&records_lock);
    return check_locked(&g, child, errp);
}

bool block_perm_check(BlockNode *bs, Error **errp)
{
    GraphView g = { 0 };
    LOCK_GUARD(&records_lock);
    return check_locked(&g, bs, errp);
}

bool block_perm_record_add(BlockNode *bs, uint64_t perm, uint64_t shared,
                           Error **errp)
{
    PermRecord *r = calloc(1, sizeof(*r));
    if (!r) {
        error_setg(errp, "Out of memory");
        return false;
    }
    *r = (PermRecord){ .bs = bs, .perm = perm, .shared = shared,
                       .seq = block_perm_next_seq() };
    /* Like a QEMU BlockBackend, the user first comes in sharing
     * everything and then narrows what it shares, so a conflict over
     * what it takes is the one reported. */
    PermRecord wide = *r;
    wide.shared = BLOCK_PERM_ALL;
    GraphView g1 = { .extra = &wide }, g2 = { .extra = r };
    LOCK_GUARD(&records_lock);
    if (!check_locked(&g1, bs, errp) || !check_locked(&g2, bs, errp)) {
        free(r);
        return false;
    }
    r->next = records;
    records = r;
    return true;
}

void block_perm_record_del(BlockNode *bs, uint64_t perm, uint64_t shared)
{
    LOCK_GUARD(&records_lock);
    for (PermRecord **p = &records; *p; p = &(*p)->next) {
        PermRecord *r = *p;
        if (r->bs == bs && r->perm == perm && r->shared == shared &&
            !r->parent_desc) {
            *p = r->next;
            record_free(r);
            return;
        }
    }
}

void block_perm_forget_node(BlockNode *bs)
{
    LOCK_GUARD(&records_lock);
    for (PermRecord **p = &records; *p;) {
        PermRecord *r = *p;
        if (r->bs == bs) {
            *p = r->next;
            record_free(r);
        } else {
            p = &r->next;
        }
    }
}

BlockPermHold *block_perm_hold(BlockNode *bs, uint64_t perm, uint64_t shared,
                               const char *parent_desc, const char *role,
                               Error **errp)
{
    PermRecord *r = calloc(1, sizeof(*r));
    if (r) {
        r->parent_desc = strdup(parent_desc);
        r->role = strdup(role);
    }
    if (!r || !r->parent_desc || !r->role) {
        if (r) {
            record_free(r);
        }
        error_setg(errp, "Out of memory");
        return NULL;
    }
    r->bs = bs;
    r->perm = perm & BLOCK_PERM_ALL;
    r->shared = shared & BLOCK_PERM_ALL;
    r->seq = block_perm_next_seq();
    GraphView g = { .extra = r };
    LOCK_GUARD(&records_lock);
    if (!check_locked(&g, bs, errp)) {
        record_free(r);
        return NULL;
    }
    r->next = records;
    records = r;
    return r;
}

void block_perm_release(BlockPermHold *h)
{
    if (!h) {
        return;
    }
    LOCK_GUARD(&records_lock);
    for (PermRecord **p = &records; *p; p = &(*p)->next) {
        if (*p == h) {
            *p = h->next;
            record_free(h);
            return;
        }
    }
}
