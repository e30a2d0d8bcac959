/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - the "iothread" object, accepted so that qemu-storage-daemon
 * command lines start unchanged.
 *
 * strata has no per-iothread event loops to bind nodes to: every NBD
 * connection already has its own receiving thread and a pool of worker
 * threads, and each job runs on its own thread (docs/architecture.md).
 * An iothread object therefore only checks its properties; an export's
 * "iothread" argument is accepted the same way.
 */
#include <stdlib.h>

#include "crypto/object.h"
#include "util/cleanup.h"
#include "util/keyval.h"

static void *iothread_create(json_t *props, Error **errp)
{
    static const char *const keys[] = {
        "poll-max-ns", "poll-grow", "poll-shrink", "aio-max-batch",
        "thread-pool-min", "thread-pool-max",
    };
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        uint64_t v;
        if (!opt_get_uint64(props, keys[i], 0, &v, errp)) {
            return NULL;
        }
        json_object_del(props, keys[i]);
    }
    /* Any non-NULL state: there is nothing to keep. */
    return calloc(1, 1);
}

const ObjectClass iothread_class = {
    .type = "iothread",
    .create = iothread_create,
    .destroy = free,
};
