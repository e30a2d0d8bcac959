/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - Prometheus samples for block I/O accounting and node sizes.
 *
 * Collectors (stratad's, per export and per node) call these; the metric
 * families are documented in docs/metrics.md.
 */
#ifndef STRATA_METRICS_METRICS_BLOCK_H
#define STRATA_METRICS_METRICS_BLOCK_H

#include <stdint.h>

#include "block/accounting.h"
#include "metrics/metrics.h"

/* Writes the counters, gauges, latency histogram and window statistics of
 * acct.  prefix names the level ("strata_export" or "strata_node");
 * labels identify the series (export="e0", node="n0"); an "op" label
 * (and "interval" for windows) is added.  At most 6 labels. */
void metrics_write_block_acct(MetricsWriter *w, const char *prefix,
                              const MetricLabel *labels, size_t nlabels,
                              BlockAcct *acct);

/* strata_node_origin_{bytes,requests,failed_requests}_total and
 * strata_node_origin_request_time_seconds_total: the part of a node's
 * counters that each origin (client, job, metadata) made, with "op" and
 * "origin" labels added to labels. */
void metrics_write_origin_stats(MetricsWriter *w, const MetricLabel *labels,
                                size_t nlabels, BlockAcct *acct);

typedef struct MetricsNodeSizes {
    uint64_t capacity;          /* virtual size, bytes */
    uint64_t allocation;        /* block_node_allocation(), bytes */
    int64_t physical;           /* bytes on storage; < 0 if unknown */
    uint64_t write_threshold;   /* armed threshold, 0 if none */
} MetricsNodeSizes;

/* strata_node_{capacity,allocation,physical,write_threshold}_bytes. */
void metrics_write_node_sizes(MetricsWriter *w, const MetricLabel *labels,
                              size_t nlabels, const MetricsNodeSizes *s);

#endif
