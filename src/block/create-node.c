/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - creating an image format on a node that is already open
 * (blockdev-create), as opposed to on a file named by path
 * (block_create). */
#include <string.h>

#include "block/block_core.h"
#include "block/drivers/qcow2/qcow2.h"

bool block_create_on_node(const char *fmt, BlockNode *file, json_t *opts,
                          Error **errp)
{
    if (!strcmp(fmt, "qcow2")) {
        return qcow2_create_on_node(file, opts, errp);
    }
    error_setg(errp, "Driver does not support blockdev-create");
    return false;
}
