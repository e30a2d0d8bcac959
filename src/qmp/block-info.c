/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - BlockDeviceInfo / ImageInfo (see block-info.h). */
#include "qmp/block-info.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_int.h"
#include "util/cleanup.h"

json_t *qmp_image_info(BlockNode *bs, bool flat)
{
    json_t *info = json_object();
    json_object_set_new(info, "virtual-size",
                        json_integer((json_int_t)block_node_size(bs)));
    json_object_set_new(info, "filename",
                        json_string(bs->filename ? bs->filename : ""));
    if (bs->drv->get_cluster_size) {
        uint32_t cs = bs->drv->get_cluster_size(bs);
        if (cs) {
            json_object_set_new(info, "cluster-size", json_integer(cs));
        }
    }
    json_object_set_new(info, "format",
                        json_string(block_node_driver_name(bs)));
    int64_t actual = block_allocated_file_size(bs);
    if (actual >= 0) {
        json_object_set_new(info, "actual-size", json_integer(actual));
    }
    if (bs->drv->get_specific_info) {
        json_t *spec = bs->drv->get_specific_info(bs);
        if (spec) {
            json_object_set_new(info, "format-specific", spec);
        }
    }
    bool dirty = bs->drv->is_dirty ? bs->drv->is_dirty(bs) : false;
    json_object_set_new(info, "dirty-flag", json_boolean(dirty));
    if (bs->backing_file && bs->backing_file[0]) {
        json_object_set_new(info, "backing-filename",
                            json_string(bs->backing_file));
        CLEANUP_FREE char *full = block_full_backing_filename(bs, NULL);
        if (full) {
            json_object_set_new(info, "full-backing-filename",
                                json_string(full));
        }
        if (bs->backing_format) {
            json_object_set_new(info, "backing-filename-format",
                                json_string(bs->backing_format));
        }
    }
    if (!flat && bs->backing) {
        json_object_set_new(info, "backing-image",
                            qmp_image_info(bs->backing, false));
    }
    return info;
}

json_t *qmp_block_device_info(BlockNode *bs, bool flat)
{
    /* QEMU counts the depth while it nests backing-image, so a flat
     * query reports 0 whatever the chain. */
    int depth = 0;
    for (BlockNode *b = bs->backing; b && !flat; b = b->backing) {
        depth++;
    }
    json_t *info = json_object();
    json_object_set_new(info, "file",
                        json_string(bs->filename ? bs->filename : ""));
    json_object_set_new(info, "node-name", json_string(block_node_name(bs)));
    json_object_set_new(info, "ro", json_boolean(bs->read_only));
    json_object_set_new(info, "drv", json_string(block_node_driver_name(bs)));
    /* QEMU shows the open backing node's file name here (the name as
     * recorded in the image is in image.backing-filename). */
    if (bs->backing && bs->backing->filename) {
        json_object_set_new(info, "backing_file",
                            json_string(bs->backing->filename));
    }
    json_object_set_new(info, "backing_file_depth", json_integer(depth));
    json_object_set_new(info, "encrypted", json_false());
    json_object_set_new(info, "detect_zeroes", json_string("off"));
    static const char *const zero_limits[] = {
        "bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr",
    };
    for (size_t i = 0; i < ARRAY_SIZE(zero_limits); i++) {
        json_object_set_new(info, zero_limits[i], json_integer(0));
    }
    json_object_set_new(info, "image", qmp_image_info(bs, flat));
    json_object_set_new(info, "cache",
                        json_pack("{s:b, s:b, s:b}", "writeback", 1,
                                  "direct", bs->cache_direct,
                                  "no-flush", bs->no_flush));
    json_object_set_new(info, "write_threshold",
                        json_integer((json_int_t)atomic_load(
                            &bs->write_threshold)));
    return info;
}
