/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - block-stream: copy the data of a backing chain into the top
 * image while it is in use, then drop the layers it no longer needs. */
#ifndef STRATA_JOBS_STREAM_H
#define STRATA_JOBS_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

/* QEMU 7.2's block-stream arguments, decoded. */
typedef struct StreamOptions {
    const char *job_id;           /* NULL: QEMU's default (the device's
                                     name, "" for a node: refused) */
    const char *device;           /* node name */
    const char *base;             /* a file name in the chain, or NULL */
    const char *base_node;        /* or a node name, or NULL */
    const char *bottom;           /* or the lowest node to copy from */
    const char *backing_file;     /* the header's new backing string */
    bool has_speed;
    int64_t speed;                /* bytes/s, 0 = unlimited */
    const char *on_error;         /* report|ignore|enospc|stop|auto */
    const char *filter_node_name;
    bool auto_finalize;
    bool auto_dismiss;
    /* strata: adapt the rate to the clients' latency (docs/stream.md);
     * speed is then the ceiling. */
    bool adaptive_speed;
    /* strata, not on QMP: wait this long (pausable, cancellable) before
     * copying anything -- an image's prefetch-delay. */
    uint64_t delay_ns;
} StreamOptions;

/* Checks the arguments in QEMU's order, with QEMU's texts, and starts
 * the job (created and running events are sent before this returns). */
bool stream_start(const StreamOptions *o, Error **errp);

#endif
