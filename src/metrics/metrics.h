/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - Prometheus /metrics endpoint.
 *
 * One HTTP server per process (libmicrohttpd, its own thread) serves
 * GET /metrics in the Prometheus text exposition format 0.0.4; every
 * other path is 404.  What it serves comes from collectors: functions
 * registered with metrics_register() that write samples through a
 * MetricsWriter.  The writer groups samples by family whatever order the
 * collectors write them in, prints HELP and TYPE once per family, escapes
 * label values, and refuses invalid names (logged, sample dropped).
 *
 * Conventions (docs/metrics.md): counters end in _total; times are in
 * seconds and sizes in bytes, in the name (_seconds, _bytes).
 */
#ifndef STRATA_METRICS_METRICS_H
#define STRATA_METRICS_METRICS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct MetricsWriter MetricsWriter;
typedef void MetricsCollectFn(MetricsWriter *w, void *opaque);

typedef struct MetricLabel {
    const char *name;    /* [a-zA-Z_][a-zA-Z0-9_]*, not "le" */
    const char *value;   /* any UTF-8; escaped on output */
} MetricLabel;

/* ---- server ---- */

/* addr is {"type": "inet", "host": H, "port": P} (port a number or a
 * string; "0" picks a free port) or {"type": "unix", "path": P}.
 * Fails if a server is already running or the address cannot be bound. */
bool metrics_start(json_t *addr, Error **errp);
/* Stops the server (waits for a scrape in progress); no-op if stopped. */
void metrics_stop(void);
/* TCP port of the running inet server (useful with port 0), else -1. */
int metrics_port(void);

/* ---- collectors ---- */

/* Collectors run on the server thread, one scrape at a time, in
 * registration order.  They must be thread-safe against the I/O and
 * control paths. */
bool metrics_register(MetricsCollectFn *collect, void *opaque);
/* Removes a (collect, opaque) pair.  When it returns the collector is not
 * running and will not run again, so opaque may be freed.  Must not be
 * called from a collector, nor while holding a lock a collector takes. */
void metrics_unregister(MetricsCollectFn *collect, void *opaque);
/* Runs every collector and returns the exposition text (caller frees);
 * NULL only when out of memory.  This is what GET /metrics serves. */
char *metrics_collect_text(size_t *len);

/* ---- writer ---- */

MetricsWriter *metrics_writer_new(void);
/* Returns the text of everything written so far and frees w. */
char *metrics_writer_finish(MetricsWriter *w, size_t *len);
void metrics_writer_free(MetricsWriter *w);

/* A sample of a counter family; name must end in "_total". */
void metrics_counter(MetricsWriter *w, const char *name, const char *help,
                     const MetricLabel *labels, size_t nlabels, double value);
void metrics_gauge(MetricsWriter *w, const char *name, const char *help,
                   const MetricLabel *labels, size_t nlabels, double value);
/* One histogram series: bounds[i] are the "le" upper bounds (inclusive,
 * increasing), counts[] are nbounds + 1 per-bucket counts (not
 * cumulative; the last is above every bound).  Writes cumulative
 * _bucket lines including le="+Inf", then _sum and _count. */
void metrics_histogram(MetricsWriter *w, const char *name, const char *help,
                       const MetricLabel *labels, size_t nlabels,
                       const double *bounds, size_t nbounds,
                       const uint64_t *counts, double sum);

/* Formats v as Prometheus reads it: shortest round-trip decimal, "NaN",
 * "+Inf", "-Inf".  buf must hold 32 bytes. */
void metrics_format_value(char *buf, size_t size, double v);

#endif
