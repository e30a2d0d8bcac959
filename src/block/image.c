/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - whole-image operations the tools run offline: check, commit's
 * emptying of the top layer, and rewriting the backing file name. */
#include <errno.h>

#include "block/block_core.h"

int block_check(BlockNode *bs, BlockCheckResult *res, int fix)
{
    if (!bs->drv->check) {
        return -ENOTSUP;
    }
    return bs->drv->check(bs, res, fix);
}

int block_make_empty(BlockNode *bs)
{
    if (!bs->drv->make_empty) {
        return -ENOTSUP;
    }
    return bs->drv->make_empty(bs);
}

bool block_node_can_change_backing_file(const BlockNode *bs)
{
    return bs->drv->change_backing_file != NULL;
}

bool block_change_backing_file(BlockNode *bs, const char *backing_file,
                               const char *backing_fmt, Error **errp)
{
    if (!bs->drv->change_backing_file) {
        error_setg_errno(errp, ENOTSUP, "Image format '%s' cannot record a "
                         "backing file", bs->drv->format_name);
        return false;
    }
    if (!bs->drv->change_backing_file(bs, backing_file, backing_fmt, errp)) {
        return false;
    }
    /* As QEMU: what the header now names is what the node's name is
     * compared with (a node whose backing matches it keeps a plain
     * filename). */
    if (bs->naming) {
        block_naming_set_auto_backing(bs, backing_file, false);
        block_refresh_filename(bs);
    }
    return true;
}
