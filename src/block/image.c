/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - whole-image operations the tools run offline: check, commit's
 * emptying of the top layer, and rewriting the backing file name. */
#include <errno.h>
#include <stdlib.h>

#include "block/block_core.h"
#include "block/image-params.h"
#include "util/cleanup.h"

int block_check(BlockNode *bs, BlockCheckResult *res, int fix)
{
    if (!bs->drv->check) {
        return -ENOTSUP;
    }
    /* Everything a check reads or repairs is the format's metadata. */
    BlockOrigin saved = block_origin_set(BLOCK_ORIGIN_METADATA);
    int ret = bs->drv->check(bs, res, fix);
    block_origin_set(saved);
    return ret;
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

bool block_node_has_image_params(const BlockNode *bs)
{
    return bs->drv->get_params_payload && bs->drv->set_params_payload;
}

bool block_get_image_params(BlockNode *bs, ImageParams *ip, Error **errp)
{
    if (!block_node_has_image_params(bs)) {
        error_setg(errp, "Image format '%s' does not store image parameters",
                   bs->drv->format_name);
        return false;
    }
    CLEANUP_FREE uint8_t *buf = NULL;
    size_t len = 0;
    if (!bs->drv->get_params_payload(bs, &buf, &len, errp)) {
        return false;
    }
    if (!buf) {
        image_params_init(ip);
        if (!ip->kv) {
            error_setg(errp, "Out of memory");
            return false;
        }
        return true;
    }
    return image_params_decode(buf, len, ip, errp);
}

bool block_set_image_params(BlockNode *bs, const ImageParams *ip,
                            Error **errp)
{
    if (!block_node_has_image_params(bs)) {
        error_setg(errp, "Image format '%s' does not store image parameters",
                   bs->drv->format_name);
        return false;
    }
    if (bs->read_only) {
        error_setg(errp, "Image '%s' is read-only", bs->filename);
        return false;
    }
    CLEANUP_FREE uint8_t *buf = NULL;
    size_t len = 0;
    if (!image_params_encode(ip, &buf, &len, errp)) {
        return false;
    }
    return bs->drv->set_params_payload(bs, buf, len, errp);
}

const BlockCreateOpt *block_node_amend_opts(const BlockNode *bs)
{
    return bs->drv->amend ? bs->drv->amend_opts : NULL;
}

bool block_amend(BlockNode *bs, json_t *opts, bool force,
                 BlockAmendProgress *progress, void *opaque, Error **errp)
{
    if (!bs->drv->amend) {
        error_setg(errp, "Format driver '%s' does not support option "
                   "amendment", bs->drv->format_name);
        return false;
    }
    return bs->drv->amend(bs, opts, force, progress, opaque, errp);
}
