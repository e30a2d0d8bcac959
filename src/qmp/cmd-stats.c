/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP I/O statistics: query-blockstats and
 * block-latency-histogram-set.
 *
 * QEMU keeps statistics in BlockBackends (devices); strata keeps them in
 * two places, and query-blockstats reports both in QEMU's BlockStats
 * shape:
 *  - per export: {"device": export id, "node-name", "stats", "parent"?,
 *    "backing"?} -- what the client sees, like a QEMU device entry;
 *  - per node (query-nodes: true): {"parent"?, "stats", "node-name",
 *    "driver-specific"?} -- what the requests cost on that node.
 * "parent" is the entry of the node's file child, "backing" (export
 * entries only, as QEMU's BlockBackend level) that of its backing node or
 * a filter's child.  Members come in QEMU 7.2's order (its QDict hash
 * order), so the text matches what qemu-storage-daemon prints.
 */
#include <stdlib.h>
#include <string.h>

#include "block/accounting.h"
#include "block/block.h"
#include "nbd/nbd.h"
#include "qmp/acct-json.h"
#include "qmp/qapi-schema.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"
#include "util/cleanup.h"

/* QEMU's node-level stats for a node without accounting (only under the
 * overhead benchmark): all zero, both switches off. */
static json_t *zero_stats(uint64_t wr_highest_offset)
{
    BlockAcctOptions o;
    block_acct_options_init(&o);
    o.account_invalid = false;
    o.account_failed = false;
    o.n_intervals = 0;
    BlockAcct *tmp = block_acct_new(&o, NULL);
    if (!tmp) {
        return NULL;
    }
    json_t *s = qmp_acct_stats(tmp, wr_highest_offset);
    block_acct_free(tmp);
    return s;
}

static json_t *acct_stats(BlockAcct *acct, uint64_t wr_highest_offset)
{
    return acct ? qmp_acct_stats(acct, wr_highest_offset)
                : zero_stats(wr_highest_offset);
}

/* QEMU's bdrv_query_bds_stats(): the entry of one node, with its file
 * child as "parent" and, at export level, its backing (or filtered)
 * child as "backing".  stats replaces the node's own statistics (the
 * export's, for the top entry). */
static json_t *node_entry(BlockNode *bs, json_t *stats, bool export_level,
                          int depth)
{
    if (!stats) {
        stats = acct_stats(block_node_acct(bs),
                           block_node_wr_highest_offset(bs));
    }
    json_t *e = json_object();
    if (!e || !stats) {
        json_decref(e);
        json_decref(stats);
        return NULL;
    }
    /* A chain is at most BLOCK_MAX_BACKING_DEPTH long; the bound only
     * keeps a corrupted graph from recursing forever. */
    BlockNode *file = block_node_file(bs);
    if (file && depth < 1024) {
        json_t *p = node_entry(file, NULL, export_level, depth + 1);
        if (p) {
            json_object_set_new(e, "parent", p);
        }
    }
    json_object_set_new(e, "stats", stats);
    /* A filter passes every request to its one child, which QEMU's
     * BlockBackend-level query lists as "backing". */
    BlockNode *below = block_node_is_filter(bs) ? file
                                                : block_node_backing(bs);
    if (export_level && below && depth < 1024) {
        json_t *b = node_entry(below, NULL, true, depth + 1);
        if (b) {
            json_object_set_new(e, "backing", b);
        }
    }
    json_object_set_new(e, "node-name", json_string(block_node_name(bs)));
    json_t *ds = block_node_specific_stats(bs);
    if (ds) {
        json_object_set_new(e, "driver-specific", ds);
    }
    return e;
}

static void add_export_entry(const char *id, BlockNode *bs, BlockAcct *acct,
                             void *opaque)
{
    json_t *list = opaque;
    json_t *stats = acct_stats(acct, block_node_wr_highest_offset(bs));
    json_t *e = node_entry(bs, stats, true, 0);
    if (!e) {
        return;
    }
    /* "device" sorts first in QEMU's order. */
    json_t *out = json_pack("{s:s}", "device", id);
    if (out) {
        json_object_update(out, e);
        json_array_append_new(list, out);
    }
    json_decref(e);
}

static bool add_node_entry(BlockNode *bs, void *opaque)
{
    json_t *e = node_entry(bs, NULL, false, 0);
    if (e) {
        json_array_append_new(opaque, e);
    }
    return true;
}

static json_t *cmd_query_blockstats(json_t *args, Error **errp)
{
    json_t *list = json_array();
    if (!list) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    if (qmp_arg_bool(args, "query-nodes", false)) {
        block_graph_foreach(add_node_entry, list);
    } else {
        nbd_export_foreach_stats(add_export_entry, list);
    }
    return list;
}

/* ---- block-latency-histogram-set ---- */

/* QEMU's (qemu-system's: qsd has no such command). */
static const QmpArgSpec histogram_set_args[] = {
    { "id", QMP_ARG_STR },
    { "boundaries", QMP_ARG_ARRAY, .optional = true, .elem = QMP_ARG_UINT64 },
    { "boundaries-read", QMP_ARG_ARRAY, .optional = true,
      .elem = QMP_ARG_UINT64 },
    { "boundaries-write", QMP_ARG_ARRAY, .optional = true,
      .elem = QMP_ARG_UINT64 },
    { "boundaries-flush", QMP_ARG_ARRAY, .optional = true,
      .elem = QMP_ARG_UINT64 },
    { NULL },
};

typedef struct FindAcct {
    const char *id;
    BlockAcct *acct;
    bool found;
    bool apply;           /* false: only look */
    json_t *cmd;          /* the validated arguments */
    LatencyBins *bins[BLOCK_ACCT__MAX];
    bool set[BLOCK_ACCT__MAX];
} FindAcct;

/* What the command does once the target is found and every list is
 * valid; runs while the export (if any) is referenced. */
static void apply_histograms(BlockAcct *acct, FindAcct *f)
{
    bool any = false;
    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        any |= f->set[t];
    }
    if (!any) {
        block_acct_clear_latency_histograms(acct);
        return;
    }
    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        if (f->set[t]) {
            block_acct_set_latency_histogram(acct, (BlockAcctType)t,
                                             f->bins[t]);
            f->bins[t] = NULL;
        }
    }
}

static void find_export(const char *id, BlockNode *bs, BlockAcct *acct,
                        void *opaque)
{
    FindAcct *f = opaque;
    (void)bs;
    if (!f->found && strcmp(id, f->id) == 0) {
        f->found = true;
        if (acct && f->apply) {
            apply_histograms(acct, f);
        }
    }
}

/* Builds the bins of one type from the type's own list, else from
 * "boundaries".  QEMU's messages; an empty list is refused (QEMU 7.2
 * accepts it and then crashes on the next request). */
static bool prepare_type(FindAcct *f, BlockAcctType type, const char *key,
                         const char *what, Error **errp)
{
    json_t *list = json_object_get(f->cmd, key);
    if (!list) {
        list = json_object_get(f->cmd, "boundaries");
    }
    if (!list) {
        return true;
    }
    size_t n = json_array_size(list);
    CLEANUP_FREE uint64_t *b = calloc(n ? n : 1, sizeof(*b));
    if (!b) {
        error_setg(errp, "Out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint64_t)json_integer_value(json_array_get(list, i));
    }
    f->set[type] = true;
    f->bins[type] = n ? latency_bins_new(b, n, NULL) : NULL;
    if (!f->bins[type]) {
        error_setg(errp, "Device '%s' set %s boundaries fail", f->id, what);
        return false;
    }
    return true;
}

static json_t *cmd_block_latency_histogram_set(json_t *args, Error **errp)
{
    FindAcct f = { .id = qmp_arg_str(args, "id", ""), .cmd = args };
    /* As QEMU: the id first (an export id, as QEMU's device, then a node
     * name), then the lists -- all of them before anything changes. */
    nbd_export_foreach_stats(find_export, &f);
    BlockNode *bs = f.found ? NULL : block_node_find(f.id);
    if (!f.found && !bs) {
        error_set(errp, ERROR_CLASS_DEVICE_NOT_FOUND, "Device '%s' not found",
                  f.id);
        return NULL;
    }
    bool ok = prepare_type(&f, BLOCK_ACCT_READ, "boundaries-read", "read",
                           errp) &&
              prepare_type(&f, BLOCK_ACCT_WRITE, "boundaries-write", "write",
                           errp) &&
              prepare_type(&f, BLOCK_ACCT_FLUSH, "boundaries-flush", "flush",
                           errp);
    if (ok) {
        f.apply = true;
        if (bs) {
            if (block_node_acct(bs)) {
                apply_histograms(block_node_acct(bs), &f);
            }
        } else {
            f.found = false;
            nbd_export_foreach_stats(find_export, &f);
        }
    }
    for (int t = BLOCK_ACCT_READ; t < BLOCK_ACCT__MAX; t++) {
        latency_bins_free(f.bins[t]);
    }
    return ok ? json_object() : NULL;
}

void qmp_register_stats_commands(void)
{
    qmp_register_command_args("query-blockstats", cmd_query_blockstats,
                              qapi_query_blockstats_arg);
    qmp_register_command_args("block-latency-histogram-set",
                              cmd_block_latency_histogram_set,
                              histogram_set_args);
}
