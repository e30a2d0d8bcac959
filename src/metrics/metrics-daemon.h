/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - stratad's /metrics: the endpoint started by --metrics and the
 * collector that reports every export and every node. */
#ifndef STRATA_METRICS_METRICS_DAEMON_H
#define STRATA_METRICS_METRICS_DAEMON_H

#include <jansson.h>
#include <stdbool.h>

#include "metrics/metrics.h"
#include "util/error.h"

/* --metrics addr.type=inet,addr.host=H,addr.port=N or
 * addr.type=unix,addr.path=P: opts is the parsed keyval object
 * {"addr": {...}}.  Starts the HTTP server and registers the daemon's
 * collector.  Fails on unknown members or an address that cannot be
 * bound. */
bool metrics_daemon_start(json_t *opts, Error **errp);
/* Stops the server and unregisters the collector; no-op if not started. */
void metrics_daemon_stop(void);

/* The collector itself (exports, then nodes in creation order); exposed
 * for tests. */
void metrics_daemon_collect(MetricsWriter *w, void *opaque);

#endif
