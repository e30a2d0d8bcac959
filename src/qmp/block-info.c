/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - BlockDeviceInfo / ImageInfo (see block-info.h). */
#include "qmp/block-info.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

json_t *qmp_image_info(BlockNode *bs, bool flat)
{
    json_t *info = json_object();
    json_t *snapshots = block_snapshot_info_json(bs);
    if (snapshots) {
        json_object_set_new(info, "snapshots", snapshots);
    }
    json_object_set_new(info, "virtual-size",
                        json_integer((json_int_t)block_node_size(bs)));
    const char *filename = block_node_filename(bs);
    json_object_set_new(info, "filename",
                        json_string(filename ? filename : ""));
    uint32_t cs = block_node_cluster_size(bs);
    if (cs) {
        json_object_set_new(info, "cluster-size", json_integer(cs));
    }
    json_object_set_new(info, "format",
                        json_string(block_node_driver_name(bs)));
    int64_t actual = block_allocated_file_size(bs);
    if (actual >= 0) {
        json_object_set_new(info, "actual-size", json_integer(actual));
    }
    json_t *spec = block_node_specific_info(bs);
    if (spec) {
        json_object_set_new(info, "format-specific", spec);
    }
    /* As QEMU: only a node whose driver has image info has the flag. */
    if (block_node_has_image_info(bs)) {
        json_object_set_new(info, "dirty-flag",
                            json_boolean(block_node_is_dirty(bs)));
    }
    const char *backing_file = block_node_backing_file(bs);
    if (backing_file && backing_file[0]) {
        json_object_set_new(info, "backing-filename",
                            json_string(backing_file));
        CLEANUP_FREE char *full = block_full_backing_filename(bs, NULL);
        if (full) {
            json_object_set_new(info, "full-backing-filename",
                                json_string(full));
        }
        if (block_node_backing_format(bs)) {
            json_object_set_new(info, "backing-filename-format",
                                json_string(block_node_backing_format(bs)));
        }
    }
    if (!flat && block_node_backing(bs)) {
        json_object_set_new(info, "backing-image",
                            qmp_image_info(block_node_backing(bs), false));
    }
    return info;
}

json_t *qmp_block_device_info(BlockNode *bs, bool flat)
{
    /* QEMU counts the depth while it nests backing-image, so a flat
     * query reports 0 whatever the chain. */
    int depth = 0;
    for (BlockNode *b = block_node_backing(bs); b && !flat;
         b = block_node_backing(b)) {
        depth++;
    }
    const char *filename = block_node_filename(bs);
    json_t *info = json_object();
    json_object_set_new(info, "file", json_string(filename ? filename : ""));
    json_object_set_new(info, "node-name", json_string(block_node_name(bs)));
    json_object_set_new(info, "ro", json_boolean(block_node_read_only(bs)));
    json_object_set_new(info, "drv", json_string(block_node_driver_name(bs)));
    /* QEMU shows the open backing node's file name here (the name as
     * recorded in the image is in image.backing-filename). */
    BlockNode *backing = block_node_backing(bs);
    if (backing && block_node_filename(backing)) {
        json_object_set_new(info, "backing_file",
                            json_string(block_node_filename(backing)));
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
                                  "direct", block_node_cache_direct(bs),
                                  "no-flush", block_node_no_flush(bs)));
    json_object_set_new(info, "write_threshold",
                        json_integer((json_int_t)block_node_write_threshold(
                            bs)));
    return info;
}
