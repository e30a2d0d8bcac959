/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP thin-provisioning commands: block-set-write-threshold and
 * block_resize (QEMU's), query-block-allocation (strata's).
 *
 * query-block-allocation is what a thin-provisioning manager polls, so it
 * never reads the disk: sizes come from the node (atomics) and from one
 * stat/ioctl per protocol node, which also makes a grown device visible
 * to the node (QEMU's host_device re-reads its size the same way).  The
 * allocation is the block layer's (block_node_allocation), the number
 * /metrics reports too.
 */
#include <stdint.h>

#include "block/block.h"
#include "qmp/qapi-schema.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"

/* QEMU's BDRV_MAX_LENGTH: INT64_MAX aligned down to its largest request
 * size, the bound block_resize reports. */
#define QEMU_MAX_LENGTH 9223372035781033984LL

/* A format or filter node reports the numbers of the protocol node under
 * it, which is where host space is used. */
static json_t *thinp_alloc_info(BlockNode *bs)
{
    BlockStorageInfo a;
    block_node_storage_info(bs, &a);
    json_t *info = json_object();
    if (!info) {
        return NULL;
    }
    json_object_set_new(info, "node-name", json_string(block_node_name(bs)));
    json_object_set_new(info, "driver",
                        json_string(block_node_driver_name(bs)));
    if (block_node_filename(bs)) {
        json_object_set_new(info, "filename",
                            json_string(block_node_filename(bs)));
    }
    if (block_node_file(bs)) {
        json_object_set_new(info, "file",
                            json_string(block_node_name(block_node_file(bs))));
    }
    if (block_node_is_protocol(bs)) {
        json_object_set_new(info, "block-device",
                            json_boolean(a.block_device));
    }
    json_object_set_new(info, "capacity",
                        json_integer((json_int_t)block_node_size(bs)));
    json_object_set_new(info, "allocation",
                        json_integer((json_int_t)a.allocation));
    if (a.physical >= 0) {
        json_object_set_new(info, "physical", json_integer(a.physical));
    }
    /* Signed, as QEMU's write_threshold: 2^64-1 shows as -1. */
    json_object_set_new(info, "write-threshold",
                        json_integer((json_int_t)block_node_write_threshold(
                            bs)));
    json_object_set_new(info, "wr_highest_offset",
                        json_integer((json_int_t)block_node_wr_highest_offset(
                            bs)));
    return info;
}

static json_t *cmd_block_set_write_threshold(json_t *args, Error **errp)
{
    const char *name = qmp_arg_str(args, "node-name", NULL);
    BlockNode *bs = block_node_find(name);
    if (!bs) {
        error_setg(errp, "Device '%s' not found", name);
        return NULL;
    }
    /* Negative numbers wrap as in QEMU's uint64 visitor: -1 is 2^64-1. */
    uint64_t threshold = qmp_arg_uint64(args, "write-threshold", 0);
    block_node_set_write_threshold(bs, threshold);
    return json_object();
}

static const QmpArgSpec query_alloc_args[] = {
    { "node-name", QMP_ARG_STR, .optional = true },
    { NULL },
};

static bool add_alloc_info(BlockNode *bs, void *opaque)
{
    json_t *info = thinp_alloc_info(bs);
    if (info) {
        json_array_append_new(opaque, info);
    }
    return true;
}

static json_t *cmd_query_block_allocation(json_t *args, Error **errp)
{
    const char *name = qmp_arg_str(args, "node-name", NULL);
    json_t *list = json_array();
    if (!list) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    if (name) {
        BlockNode *bs = block_node_find(name);
        if (!bs) {
            json_decref(list);
            error_setg(errp, "Cannot find device='' nor node-name='%s'", name);
            return NULL;
        }
        add_alloc_info(bs, list);
    } else {
        block_graph_foreach(add_alloc_info, list);
    }
    return list;
}

static json_t *cmd_block_resize(json_t *args, Error **errp)
{
    /* QEMU: the arguments, then the lookup, then the sign. */
    json_t *size_v = json_object_get(args, "size");
    const char *device = qmp_arg_str(args, "device", NULL);
    const char *name = qmp_arg_str(args, "node-name", NULL);
    /* strata has no named block backends (as qemu-storage-daemon), so
     * only node-name can match. */
    BlockNode *bs = name ? block_node_find(name) : NULL;
    if (!bs) {
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                   device ? device : "", name ? name : "");
        return NULL;
    }
    json_int_t size = json_integer_value(size_v);
    if (size < 0) {
        error_setg(errp, "Parameter 'size' expects a >0 size");
        return NULL;
    }
    if (size > QEMU_MAX_LENGTH) {
        error_setg(errp, "offset(%lld) exceeds maximum(%lld)",
                   (long long)size, QEMU_MAX_LENGTH);
        return NULL;
    }
    if (!block_node_check_resize(bs, errp)) {
        return NULL;
    }
    /* Not exact, as QEMU: on a block device this accepts the device's
     * current size (after lvextend / losetup -c) and makes the node use
     * it. */
    if (!block_truncate(bs, (uint64_t)size, false, PREALLOC_OFF, errp)) {
        return NULL;
    }
    return json_object();
}

void qmp_register_thinp_commands(void)
{
    qmp_register_pause_commands();
    qmp_register_command_args("block-set-write-threshold",
                              cmd_block_set_write_threshold,
                              qapi_block_set_write_threshold_arg);
    qmp_register_command_args("block_resize", cmd_block_resize,
                              qapi_block_resize_arg);
    qmp_register_command_args("query-block-allocation",
                              cmd_query_block_allocation, query_alloc_args);
}
