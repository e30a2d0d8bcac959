/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the quorum driver (QEMU's "quorum").
 *
 * A node over several children that should hold the same data (a
 * mirror across disks).  Writes go to every child and succeed when at
 * least vote-threshold children took them.  With read-pattern "quorum"
 * a read reads every child and returns the content that at least
 * vote-threshold of them agree on, so one silently corrupted child is
 * outvoted; rewrite-corrupted then repairs the children that lost the
 * vote.  With read-pattern "fifo" a read takes the first child that
 * answers, in order.  The children are owned by this driver (s->children),
 * not by bs->file, because there are several.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_core.h"
#include "util/cleanup.h"
#include "util/keyval.h"

enum { QUORUM_READ_QUORUM, QUORUM_READ_FIFO };

typedef struct QuorumState {
    BlockNode **children;     /* num_children parent links */
    char (*roles)[24];        /* "children.N", each link's name */
    int num_children;
    int threshold;            /* votes a result needs */
    bool blkverify;           /* any mismatch is fatal */
    bool rewrite_corrupted;   /* repair children that lost a read vote */
    bool serialising;         /* holds a count of bs->serialise_writes */
    int read_pattern;
} QuorumState;

/* ---- QMP events (QEMU's QUORUM_REPORT_BAD / QUORUM_FAILURE) ---- */

static void sector_range(uint64_t offset, uint64_t bytes, json_int_t *start,
                         json_int_t *count)
{
    *start = (json_int_t)(offset / 512);
    *count = (json_int_t)((offset + bytes + 511) / 512) - *start;
}

static void report_bad(const char *type, uint64_t offset, uint64_t bytes,
                       BlockNode *child, int ret)
{
    json_int_t start, count;
    sector_range(offset, bytes, &start, &count);
    json_t *data = json_pack("{s:s, s:s, s:I, s:I}", "type", type,
                             "node-name", block_node_name(child),
                             "sector-num", start, "sectors-count", count);
    if (!data) {
        return;
    }
    if (ret < 0) {
        json_object_set_new(data, "error", json_string(strerror(-ret)));
    }
    block_emit_event("QUORUM_REPORT_BAD", data);
}

static void report_failure(BlockNode *bs, uint64_t offset, uint64_t bytes)
{
    json_int_t start, count;
    sector_range(offset, bytes, &start, &count);
    json_t *data = json_pack("{s:s, s:I, s:I}",
                             "reference", block_node_name(bs),
                             "sector-num", start, "sectors-count", count);
    if (data) {
        block_emit_event("QUORUM_FAILURE", data);
    }
}

/* The errno most children failed with (the first of a tie), as QEMU
 * votes on errors when too few children succeeded. */
static int error_vote(const int *rets, int n)
{
    int best = -EIO, best_count = 0;
    for (int i = 0; i < n; i++) {
        if (!rets[i]) {
            continue;
        }
        int count = 0;
        for (int j = 0; j < n; j++) {
            count += rets[j] == rets[i];
        }
        if (count > best_count) {
            best = rets[i];
            best_count = count;
        }
    }
    return best;
}

/* ---- open / close ---- */

/* The children option as a list: a JSON array, or an object keyed
 * "0".."n-1" (dotted children.N.x options).  Returns the count or -1. */
static int children_count(json_t *list)
{
    if (json_is_array(list)) {
        return (int)json_array_size(list);
    }
    if (!json_is_object(list)) {
        return -1;
    }
    int n = (int)json_object_size(list);
    for (int i = 0; i < n; i++) {
        char key[16];
        snprintf(key, sizeof(key), "%d", i);
        if (!json_object_get(list, key)) {
            return -1;
        }
    }
    return n;
}

static json_t *children_item(json_t *list, int i)
{
    if (json_is_array(list)) {
        return json_array_get(list, (size_t)i);
    }
    char key[16];
    snprintf(key, sizeof(key), "%d", i);
    return json_object_get(list, key);
}

static bool open_quorum(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    QuorumState *s = bs->opaque;
    json_t *list = json_object_get(opts, "children");
    int n = list ? children_count(list) : 0;
    if (n < 0) {
        error_setg(errp, "Option children is not a valid array");
        return false;
    }
    if (n < 1) {
        error_setg(errp, "Number of provided children must be 1 or more");
        return false;
    }
    uint64_t threshold = 0;
    bool blkverify = false, rewrite = false;
    const char *pattern = NULL;
    if (!opt_get_uint64(opts, "vote-threshold", 0, &threshold, errp) ||
        !opt_get_bool(opts, "blkverify", false, &blkverify, errp) ||
        !opt_get_bool(opts, "rewrite-corrupted", false, &rewrite, errp) ||
        !opt_get_str(opts, "read-pattern", NULL, &pattern, errp)) {
        return false;
    }
    if (threshold < 1) {
        error_setg(errp, "Parameter 'vote-threshold' expects a value >= 1");
        return false;
    }
    if (threshold > (uint64_t)n) {
        error_setg(errp, "threshold may not exceed children count");
        return false;
    }
    if (!pattern || strcmp(pattern, "quorum") == 0) {
        s->read_pattern = QUORUM_READ_QUORUM;
    } else if (strcmp(pattern, "fifo") == 0) {
        s->read_pattern = QUORUM_READ_FIFO;
    } else {
        error_setg(errp, "Please set read-pattern as fifo or quorum");
        return false;
    }
    /* As QEMU: blkverify and rewrite-corrupted only mean something (and
     * are only checked) when reads vote. */
    if (s->read_pattern == QUORUM_READ_QUORUM) {
        if (blkverify && (n != 2 || threshold != 2)) {
            error_setg(errp, "blkverify=on can only be set if there are "
                       "exactly two files and vote-threshold is 2");
            return false;
        }
        if (rewrite && blkverify) {
            error_setg(errp,
                       "rewrite-corrupted=on cannot be used with blkverify=on");
            return false;
        }
        /* Repairs write to the children, which a read-only node's
         * children do not allow (QEMU fails the child's permissions). */
        if (rewrite && bs->read_only) {
            error_setg(errp, "Block node is read-only");
            return false;
        }
        s->blkverify = blkverify;
        s->rewrite_corrupted = rewrite;
    }
    s->threshold = (int)threshold;
    if (s->rewrite_corrupted) {
        /* Every write to the node takes the tracker, so that repairs
         * can exclude them (see quorum_pread); the node is new, no
         * write can be in flight yet. */
        atomic_fetch_add(&bs->serialise_writes, 1);
        s->serialising = true;
    }
    json_object_del(opts, "vote-threshold");
    json_object_del(opts, "blkverify");
    json_object_del(opts, "rewrite-corrupted");
    json_object_del(opts, "read-pattern");

    s->children = calloc((size_t)n, sizeof(*s->children));
    s->roles = calloc((size_t)n, sizeof(*s->roles));
    if (!s->children || !s->roles) {
        error_setg(errp, "Out of memory");
        return false;
    }
    uint32_t align = 1;
    for (int i = 0; i < n; i++) {
        /* block_open_child takes its child from an options object under
         * a key: give it this entry under QEMU's name for it. */
        char *key = s->roles[i];
        snprintf(key, sizeof(s->roles[i]), "children.%d", i);
        CLEANUP_JSON json_t *one = json_object();
        if (!one) {
            error_setg(errp, "Out of memory");
            return false;
        }
        json_object_set(one, key, children_item(list, i));
        BlockNode *child = block_open_child(bs, one, key, flags, errp);
        if (!child) {
            return false;
        }
        s->children[s->num_children++] = child;
        if (child->request_alignment > align) {
            align = child->request_alignment;
        }
    }
    json_object_del(opts, "children");
    bs->request_alignment = align;
    atomic_store(&bs->total_size, block_node_size(s->children[0]));
    return true;
}


static void quorum_close(BlockNode *bs)
{
    QuorumState *s = bs->opaque;
    for (int i = 0; i < s->num_children; i++) {
        block_node_detach_child(s->children[i]);
    }
    if (s->serialising) {
        atomic_fetch_sub(&bs->serialise_writes, 1);
        s->serialising = false;
    }
    free(s->children);
    free(s->roles);
    s->children = NULL;
    s->roles = NULL;
    s->num_children = 0;
}

static bool quorum_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    if (!open_quorum(bs, opts, flags, errp)) {
        /* The core frees a node whose open failed without closing it:
         * release the children opened so far. */
        quorum_close(bs);
        return false;
    }
    return true;
}

/* ---- reads ---- */

static int read_fifo(BlockNode *bs, uint64_t offset, uint64_t bytes,
                     void *buf, int flags)
{
    QuorumState *s = bs->opaque;
    int ret = -EIO;
    for (int i = 0; i < s->num_children; i++) {
        ret = block_read(s->children[i], offset, bytes, buf, flags);
        if (ret == 0) {
            return 0;
        }
        report_bad("read", offset, bytes, s->children[i], ret);
    }
    return ret;
}

static int read_vote(BlockNode *bs, uint64_t offset, uint64_t bytes,
                     void *buf, int flags)
{
    QuorumState *s = bs->opaque;
    int n = s->num_children;
    CLEANUP_FREE int *rets = calloc((size_t)n, sizeof(int));
    /* same[i]: the first child whose content equals child i's */
    CLEANUP_FREE int *same = calloc((size_t)n, sizeof(int));
    /* votes[j]: how many children hold the content first read from j */
    CLEANUP_FREE int *votes = calloc((size_t)n, sizeof(int));
    CLEANUP_FREE uint8_t *bufs = malloc((size_t)n * bytes);
    if (!rets || !same || !votes || !bufs) {
        return -ENOMEM;
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        rets[i] = block_read(s->children[i], offset, bytes, bufs + i * bytes,
                             flags);
        if (rets[i] < 0) {
            report_bad("read", offset, bytes, s->children[i], rets[i]);
        } else {
            rets[i] = 0;
            ok++;
        }
    }
    if (ok < s->threshold) {
        report_failure(bs, offset, bytes);
        return error_vote(rets, n);
    }
    int winner = -1, winner_votes = 0;
    for (int i = 0; i < n; i++) {
        if (rets[i]) {
            continue;
        }
        same[i] = i;
        for (int j = 0; j < i; j++) {
            if (!rets[j] && same[j] == j &&
                memcmp(bufs + i * bytes, bufs + j * bytes, bytes) == 0) {
                same[i] = j;
                break;
            }
        }
        if (++votes[same[i]] > winner_votes) {
            winner = same[i];
            winner_votes = votes[same[i]];
        }
    }
    if (winner_votes == ok) {
        memcpy(buf, bufs + winner * bytes, bytes);
        return 0;
    }
    /* blkverify: two children that differ is the failure it exists to
     * catch; QEMU aborts there, a daemon fails the read instead. */
    if (winner_votes < s->threshold || s->blkverify) {
        report_failure(bs, offset, bytes);
        return -EIO;
    }
    memcpy(buf, bufs + winner * bytes, bytes);
    for (int i = 0; i < n; i++) {
        if (rets[i] || same[i] == winner) {
            continue;
        }
        report_bad("read", offset, bytes, s->children[i], 0);
        if (s->rewrite_corrupted) {
            /* Best effort, as QEMU: the read already has its answer. */
            (void)block_write(s->children[i], offset, bytes, buf, 0);
        }
    }
    return 0;
}

static int quorum_pread(BlockNode *bs, uint64_t offset, uint64_t bytes,
                        void *buf, int flags)
{
    QuorumState *s = bs->opaque;
    if (s->read_pattern == QUORUM_READ_FIFO) {
        return read_fifo(bs, offset, bytes, buf, flags);
    }
    if (!s->rewrite_corrupted) {
        return read_vote(bs, offset, bytes, buf, flags);
    }
    /* A repair writes what the children held when they were read: no
     * write to the range may land between the read and the repair, or
     * the repair would bring back older data on that child. */
    TrackedWrite w = { .start = offset, .end = offset + bytes, .rmw = true };
    block_tracker_enter(bs, &w);
    int ret = read_vote(bs, offset, bytes, buf, flags);
    block_tracker_leave(bs, &w);
    return ret;
}

/* ---- writes ---- */

typedef enum { OP_WRITE, OP_ZEROES, OP_FLUSH } QuorumOp;

/* Runs op on every child; succeeds when at least threshold children
 * did, else fails with the errno most of them returned. */
static int for_all_children(BlockNode *bs, QuorumOp op, uint64_t offset,
                            uint64_t bytes, const void *buf, int flags)
{
    QuorumState *s = bs->opaque;
    int n = s->num_children;
    CLEANUP_FREE int *rets = calloc((size_t)n, sizeof(int));
    if (!rets) {
        return -ENOMEM;
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        BlockNode *c = s->children[i];
        switch (op) {
        case OP_WRITE:
            rets[i] = block_write(c, offset, bytes, buf, flags);
            break;
        case OP_ZEROES:
            rets[i] = block_write_zeroes(c, offset, bytes, flags);
            break;
        case OP_FLUSH:
            rets[i] = block_flush(c);
            break;
        }
        if (rets[i] == 0) {
            ok++;
        } else {
            /* (A flush comes with offset and bytes 0.) */
            report_bad(op == OP_FLUSH ? "flush" : "write", offset, bytes, c,
                       rets[i]);
        }
    }
    if (ok >= s->threshold) {
        return 0;
    }
    if (op != OP_FLUSH) {
        report_failure(bs, offset, bytes);
    }
    return error_vote(rets, n);
}

static int quorum_pwrite(BlockNode *bs, uint64_t offset, uint64_t bytes,
                         const void *buf, int flags)
{
    return for_all_children(bs, OP_WRITE, offset, bytes, buf, flags);
}

static int quorum_pwrite_zeroes(BlockNode *bs, uint64_t offset,
                                uint64_t bytes, int flags)
{
    return for_all_children(bs, OP_ZEROES, offset, bytes, NULL, flags);
}

/* No discard: QEMU's quorum has none either (a discard could leave the
 * children reading differently). */

static int quorum_flush(BlockNode *bs)
{
    return for_all_children(bs, OP_FLUSH, 0, 0, NULL, 0);
}

/* ---- status and size ---- */

static int quorum_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                               uint64_t *pnum, uint64_t *map,
                               BlockNode **file)
{
    /* As QEMU: zero only where every child says so (over the shortest
     * such run), data otherwise (over the longest data run). */
    QuorumState *s = bs->opaque;
    uint64_t pnum_zero = bytes, pnum_data = 0;
    (void)map;
    (void)file;
    for (int i = 0; i < s->num_children; i++) {
        uint64_t n = 0;
        int ret = block_status_above(s->children[i], NULL, offset, bytes, &n,
                                     NULL, NULL, NULL);
        if (ret < 0) {
            report_bad("read", offset, bytes, s->children[i], ret);
            pnum_data = bytes;
            break;
        }
        if (ret & BLOCK_STATUS_ZERO) {
            pnum_zero = n < pnum_zero ? n : pnum_zero;
        } else {
            pnum_data = n > pnum_data ? n : pnum_data;
        }
    }
    if (pnum_data) {
        *pnum = pnum_data;
        return BLOCK_STATUS_DATA;
    }
    *pnum = pnum_zero;
    return BLOCK_STATUS_ZERO;
}

static int64_t quorum_refresh_size(BlockNode *bs)
{
    /* As QEMU: the children must agree on the length. */
    QuorumState *s = bs->opaque;
    int64_t first = block_refresh_size(s->children[0]);
    if (first < 0) {
        return first;
    }
    for (int i = 1; i < s->num_children; i++) {
        int64_t len = block_refresh_size(s->children[i]);
        if (len < 0) {
            return len;
        }
        if (len != first) {
            return -EIO;
        }
    }
    atomic_store(&bs->total_size, (uint64_t)first);
    return first;
}

static BlockNode *quorum_list_child(BlockNode *bs, int i, const char **role)
{
    QuorumState *s = bs->opaque;
    if (i < 0 || i >= s->num_children) {
        return NULL;
    }
    if (role) {
        *role = s->roles[i];
    }
    return s->children[i];
}

static void quorum_list_child_perm(BlockNode *bs, uint64_t perm,
                                   uint64_t shared, uint64_t *nperm,
                                   uint64_t *nshared)
{
    /* As QEMU: the parents' needs pass on, repairs write, and nobody
     * else may write or resize a child, which would make the children
     * differ. */
    QuorumState *s = bs->opaque;
    *nperm = perm & (BLOCK_PERM_CONSISTENT_READ | BLOCK_PERM_WRITE |
                     BLOCK_PERM_WRITE_UNCHANGED | BLOCK_PERM_RESIZE);
    if (s->rewrite_corrupted) {
        *nperm |= BLOCK_PERM_WRITE;
    }
    *nshared = shared & (BLOCK_PERM_CONSISTENT_READ |
                         BLOCK_PERM_WRITE_UNCHANGED);
}

static int64_t quorum_allocated_file_size(BlockNode *bs)
{
    /* As QEMU for a node with several children: their sum. */
    QuorumState *s = bs->opaque;
    int64_t sum = 0;
    for (int i = 0; i < s->num_children; i++) {
        int64_t n = block_allocated_file_size(s->children[i]);
        if (n < 0) {
            return n;
        }
        sum += n;
    }
    return sum;
}

static const char *const quorum_strong_options[] = {
    "vote-threshold", "blkverify", "rewrite-corrupted", "read-pattern", NULL
};

const BlockDriver bdrv_quorum = {
    .format_name = "quorum",
    .state_size = sizeof(QuorumState),
    .no_image_info = true,
    .strong_options = quorum_strong_options,
    .open = quorum_open,
    .close = quorum_close,
    .pread = quorum_pread,
    .pwrite = quorum_pwrite,
    .pwrite_zeroes = quorum_pwrite_zeroes,
    .flush = quorum_flush,
    .block_status = quorum_block_status,
    .refresh_size = quorum_refresh_size,
    .get_allocated_file_size = quorum_allocated_file_size,
    .list_child = quorum_list_child,
    .children_option = "children",
    .list_child_perm = quorum_list_child_perm,
};
