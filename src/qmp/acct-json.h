/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - accounting as QMP shows it: QEMU's BlockDeviceStats built from
 * the block layer's accounting structs. */
#ifndef STRATA_QMP_ACCT_JSON_H
#define STRATA_QMP_ACCT_JSON_H

#include <jansson.h>
#include <stdint.h>

#include "block/accounting.h"

/* QEMU's BlockDeviceStats for query-blockstats, members in the order
 * QEMU 7.2 prints them, followed by strata's additions (p50/p90/p99/p999
 * latencies in each timed_stats entry).  wr_highest_offset is kept on the
 * node by the caller.  NULL only when out of memory. */
json_t *qmp_acct_stats(BlockAcct *acct, uint64_t wr_highest_offset);

#endif
