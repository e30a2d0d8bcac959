/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - stratad's /metrics: what the daemon reports, per export (what
 * the client sees) and per node (what it costs, plus the sizes a thin
 * provisioning manager watches).  Families: docs/metrics.md. */
#include "metrics/metrics-daemon.h"

#include <string.h>

#include "block/block.h"
#include "block/user.h"
#include "metrics/metrics-block.h"

static bool collector_registered;

/* Exports are the block users of kind "export": what their clients saw. */
static void collect_export(BlockUser *u, void *opaque)
{
    MetricsWriter *w = opaque;
    BlockAcct *acct = block_user_acct(u);
    if (!acct) {
        return;
    }
    /* A graph change may move the export to another node meanwhile. */
    char node[256];
    block_user_node_name(u, node, sizeof(node));
    const MetricLabel labels[] = {
        { "export", block_user_id(u) },
        { "node", node },
    };
    metrics_write_block_acct(w, "strata_export", labels, 2, acct);
}

static bool collect_node(BlockNode *bs, void *opaque)
{
    MetricsWriter *w = opaque;
    const MetricLabel labels[] = { { "node", block_node_name(bs) } };
    BlockAcct *acct = block_node_acct(bs);
    if (acct) {
        metrics_write_block_acct(w, "strata_node", labels, 1, acct);
        metrics_write_origin_stats(w, labels, 1, acct);
    }
    MetricsNodeSizes sizes = {
        .capacity = block_node_size(bs),
        .allocation = block_node_allocation(bs),
        .physical = block_allocated_file_size(bs),
        .write_threshold = block_node_write_threshold(bs),
    };
    metrics_write_node_sizes(w, labels, 1, &sizes);
    return true;
}

void metrics_daemon_collect(MetricsWriter *w, void *opaque)
{
    (void)opaque;
    block_user_foreach(BLOCK_USER_EXPORT, collect_export, w);
    /* The graph read lock keeps every node open while it is read. */
    block_graph_foreach(collect_node, w);
}

bool metrics_daemon_start(json_t *opts, Error **errp)
{
    json_t *addr = json_object_get(opts, "addr");
    if (!json_is_object(addr)) {
        error_setg(errp, "Parameter 'addr' is missing (addr.type=inet,"
                   "addr.host=H,addr.port=N or addr.type=unix,addr.path=P)");
        return false;
    }
    const char *key;
    json_t *val;
    json_object_foreach(opts, key, val) {
        if (strcmp(key, "addr") != 0) {
            error_setg(errp, "Parameter '%s' is unexpected", key);
            return false;
        }
    }
    if (!metrics_start(addr, errp)) {
        return false;
    }
    if (!collector_registered) {
        if (!metrics_register(metrics_daemon_collect, NULL)) {
            metrics_stop();
            error_setg(errp, "Out of memory registering the metrics collector");
            return false;
        }
        collector_registered = true;
    }
    return true;
}

void metrics_daemon_stop(void)
{
    metrics_stop();
    if (collector_registered) {
        metrics_unregister(metrics_daemon_collect, NULL);
        collector_registered = false;
    }
}
