/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - QMP thin-provisioning commands: block-set-write-threshold and
 * block_resize (QEMU's), query-block-allocation (strata's).
 *
 * query-block-allocation is what a thin-provisioning manager polls, so it
 * never reads the disk: sizes come from the node (atomics) and from one
 * fstat/ioctl per protocol node, which also makes a grown file or device
 * visible to the node (QEMU's host_device re-reads its size the same way).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block/block_int.h"
#include "qmp/qmp-args.h"
#include "qmp/qmp-internal.h"
#include "util/cleanup.h"

/* QEMU's BDRV_MAX_LENGTH: INT64_MAX aligned down to its largest request
 * size, the bound block_resize reports. */
#define QEMU_MAX_LENGTH 9223372035781033984LL

/* ---- the size of a protocol node's file when strata first saw it ----
 *
 * A qcow2 image grows only at its end, and after open its writes move
 * wr_highest_offset.  Before the first write the allocation is the end
 * of the file at open.  The node does not keep that number, and a
 * regular file's size later changes for two reasons (writes past its end,
 * which wr_highest_offset covers, and a thin-provisioning agent growing
 * it ahead of the data, which must not count as allocation), so the size
 * is recorded the first time any thin-provisioning command sees the node,
 * before any agent can have extended it.  Block devices record nothing:
 * their size is the volume, not the data.  Main thread only. */
typedef struct SeenNode {
    BlockNode *bs;
    char *name;           /* guards against a new node at a reused address */
    uint64_t end_at_open;
    bool swept;           /* seen by the running full listing */
    struct SeenNode *next;
} SeenNode;

#define SEEN_BUCKETS 1024
static SeenNode *seen[SEEN_BUCKETS];

static size_t seen_hash(const BlockNode *bs)
{
    uintptr_t p = (uintptr_t)bs;
    return (size_t)((p >> 4) ^ (p >> 14)) % SEEN_BUCKETS;
}

static bool is_block_device(const BlockNode *bs)
{
    if (!strcmp(bs->drv->format_name, "host_device")) {
        return true;
    }
    struct stat st;
    return bs->filename && stat(bs->filename, &st) == 0 && S_ISBLK(st.st_mode);
}

/* Returns the record for a protocol node, creating it on first sight. */
static SeenNode *seen_node(BlockNode *bs)
{
    SeenNode **p = &seen[seen_hash(bs)];
    for (; *p; p = &(*p)->next) {
        if ((*p)->bs == bs) {
            if (!strcmp((*p)->name, block_node_name(bs))) {
                (*p)->swept = true;
                return *p;
            }
            /* A different node now lives at this address. */
            SeenNode *stale = *p;
            *p = stale->next;
            free(stale->name);
            free(stale);
            break;
        }
    }
    SeenNode *n = calloc(1, sizeof(*n));
    if (!n || !(n->name = strdup(block_node_name(bs)))) {
        free(n);
        return NULL;
    }
    n->bs = bs;
    n->end_at_open = is_block_device(bs) ? 0 : block_node_size(bs);
    n->swept = true;
    n->next = seen[seen_hash(bs)];
    seen[seen_hash(bs)] = n;
    return n;
}

static void thinp_alloc_note_node(BlockNode *bs)
{
    for (; bs; bs = bs->file) {
        if (bs->drv->is_protocol) {
            seen_node(bs);
        }
    }
}

static void thinp_alloc_sweep_begin(void)
{
    for (size_t i = 0; i < SEEN_BUCKETS; i++) {
        for (SeenNode *n = seen[i]; n; n = n->next) {
            n->swept = false;
        }
    }
}

/* Forgets nodes the full listing did not meet: they were deleted. */
static void thinp_alloc_sweep_end(void)
{
    for (size_t i = 0; i < SEEN_BUCKETS; i++) {
        SeenNode **p = &seen[i];
        while (*p) {
            if (!(*p)->swept) {
                SeenNode *gone = *p;
                *p = gone->next;
                free(gone->name);
                free(gone);
            } else {
                p = &(*p)->next;
            }
        }
    }
}

typedef struct NodeAlloc {
    uint64_t allocation;
    int64_t physical;     /* -errno when the size cannot be read */
    bool block_device;
} NodeAlloc;

/* The size of the storage under a protocol node.  A block device's node
 * takes the new size (it only changes when the volume is extended, and
 * a node that is smaller than its device refuses nothing but reads past
 * the old end).  A regular file's node is left alone: writes past its end
 * grow it concurrently, and storing a size read a moment earlier would
 * make a cluster just appended read back as zeroes. */
static int64_t protocol_physical(BlockNode *proto, bool *block_device)
{
    struct stat st;
    *block_device = !strcmp(proto->drv->format_name, "host_device");
    if (!*block_device && proto->filename && stat(proto->filename, &st) == 0) {
        if (S_ISBLK(st.st_mode)) {
            *block_device = true;
        } else if (S_ISREG(st.st_mode)) {
            return MAX(st.st_size, (int64_t)block_node_size(proto));
        }
    }
    if (*block_device) {
        return block_refresh_size(proto);
    }
    return (int64_t)block_node_size(proto);
}

/* The largest image end that the format nodes on top of proto know from
 * their metadata (qcow2: past its last cluster in use). */
typedef struct ImageEnd {
    BlockNode *proto;
    uint64_t end;
} ImageEnd;

static bool add_image_end(BlockNode *bs, void *opaque)
{
    ImageEnd *ie = opaque;
    if (bs->file == ie->proto && bs->drv->get_image_end) {
        ie->end = MAX(ie->end, bs->drv->get_image_end(bs));
    }
    return true;
}

/* A protocol node's own numbers; a format or filter node reports those of
 * the protocol node under it, which is where host space is used. */
static NodeAlloc node_alloc(BlockNode *bs)
{
    BlockNode *proto = bs;
    while (!proto->drv->is_protocol && proto->file) {
        proto = proto->file;
    }
    NodeAlloc a = { 0 };
    uint64_t highest = atomic_load(&proto->wr_highest_offset);
    if (proto->drv->is_protocol) {
        SeenNode *n = seen_node(proto);
        a.physical = protocol_physical(proto, &a.block_device);
        a.allocation = MAX(highest, n ? n->end_at_open : 0);
        if (a.block_device) {
            /* Before the first write the device's size says nothing
             * about how much of it the image uses. */
            ImageEnd ie = { proto, 0 };
            block_graph_foreach(add_image_end, &ie);
            a.allocation = MAX(a.allocation, ie.end);
        }
    } else {
        /* No storage of its own (a network client, say): report what
         * the node exposes. */
        a.physical = (int64_t)block_node_size(proto);
        a.allocation = highest;
    }
    return a;
}

static json_t *thinp_alloc_info(BlockNode *bs)
{
    NodeAlloc a = node_alloc(bs);
    json_t *info = json_object();
    if (!info) {
        return NULL;
    }
    json_object_set_new(info, "node-name", json_string(block_node_name(bs)));
    json_object_set_new(info, "driver",
                        json_string(block_node_driver_name(bs)));
    if (bs->filename) {
        json_object_set_new(info, "filename", json_string(bs->filename));
    }
    if (bs->file) {
        json_object_set_new(info, "file",
                            json_string(block_node_name(bs->file)));
    }
    if (bs->drv->is_protocol) {
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
                        json_integer((json_int_t)atomic_load(
                            &bs->write_threshold)));
    json_object_set_new(info, "wr_highest_offset",
                        json_integer((json_int_t)atomic_load(
                            &bs->wr_highest_offset)));
    return info;
}

static const QmpArgSpec set_threshold_args[] = {
    { "node-name", QMP_ARG_STR },
    { "write-threshold", QMP_ARG_UINT64 },
    { NULL },
};

static json_t *cmd_block_set_write_threshold(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", set_threshold_args, errp)) {
        return NULL;
    }
    const char *name = qmp_arg_str(args, "node-name", NULL);
    BlockNode *bs = block_node_find(name);
    if (!bs) {
        error_setg(errp, "Device '%s' not found", name);
        return NULL;
    }
    /* Negative numbers wrap as in QEMU's uint64 visitor: -1 is 2^64-1. */
    uint64_t threshold = (uint64_t)qmp_arg_int(args, "write-threshold", 0);
    thinp_alloc_note_node(bs);
    atomic_store(&bs->write_threshold, threshold);
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
    if (!qmp_args_check(args, "", query_alloc_args, errp)) {
        return NULL;
    }
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
        thinp_alloc_sweep_begin();
        block_graph_foreach(add_alloc_info, list);
        thinp_alloc_sweep_end();
    }
    return list;
}

/* QEMU checks "size" as an int64 with the QObject visitor's texts, then
 * the lookup, then the sign. */
static const QmpArgSpec resize_args[] = {
    { "device", QMP_ARG_STR, .optional = true },
    { "node-name", QMP_ARG_STR, .optional = true },
    { "size", QMP_ARG_ANY },
    { NULL },
};

static json_t *cmd_block_resize(json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", resize_args, errp)) {
        return NULL;
    }
    json_t *size_v = json_object_get(args, "size");
    if (!json_is_integer(size_v)) {
        error_setg(errp, "Invalid parameter type for 'size', expected: "
                   "integer");
        return NULL;
    }
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
    thinp_alloc_note_node(bs);
    if (bs->read_only) {
        error_setg(errp, "Block node is read-only");
        return NULL;
    }
    /* Not exact, as QEMU: on a block device this accepts the device's
     * current size (after lvextend / losetup -c) and makes the node use
     * it. */
    if (!block_truncate(bs, (uint64_t)size, false, PREALLOC_OFF, errp)) {
        return NULL;
    }
    if (bs->drv->is_protocol) {
        /* What was cut off is no longer allocated. */
        SeenNode *n = seen_node(bs);
        if (n && n->end_at_open > (uint64_t)size) {
            n->end_at_open = (uint64_t)size;
        }
    }
    return json_object();
}

void qmp_register_thinp_commands(void)
{
    qmp_register_pause_commands();
    qmp_register_command("block-set-write-threshold",
                         cmd_block_set_write_threshold);
    qmp_register_command("block_resize", cmd_block_resize);
    qmp_register_command("query-block-allocation",
                         cmd_query_block_allocation);
}
