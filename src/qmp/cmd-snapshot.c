/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - external snapshots of a running node: blockdev-snapshot
 * (an overlay added with blockdev-add goes on top) and
 * blockdev-snapshot-sync (the overlay's qcow2 file is created first),
 * as commands and as transaction actions, with QEMU 7.2's checks in its
 * order and its texts.
 *
 * The overlay takes the node's place for every parent -- an NBD export
 * serving the node moves to the overlay without its client noticing --
 * and reads through to the node as its backing.  The overlay's image
 * header is not rewritten: the manager created it naming the node's
 * image as its backing file (blockdev-snapshot), or this command did
 * (blockdev-snapshot-sync).  Like QEMU, a file created by
 * blockdev-snapshot-sync stays when the transaction fails.
 */
#include <stdbool.h>
#include <string.h>

#include "block/block.h"
#include "jobs/job.h"
#include "qmp/qapi-schema.h"
#include "qmp/qmp-internal.h"
#include "qmp/transaction.h"

static const char *const new_image_modes[] = { "existing", "absolute-paths",
                                               NULL };

static const QmpArgSpec snapshot_members[] = {
    { "node", QMP_ARG_STR },
    { "overlay", QMP_ARG_STR },
    { NULL },
};

static const QmpArgSpec snapshot_sync_members[] = {
    { "device", QMP_ARG_STR, .optional = true },
    { "node-name", QMP_ARG_STR, .optional = true },
    { "snapshot-file", QMP_ARG_STR },
    { "snapshot-node-name", QMP_ARG_STR, .optional = true },
    { "format", QMP_ARG_STR, .optional = true },
    { "mode", QMP_ARG_ENUM, .optional = true, .choices = new_image_modes },
    { NULL },
};

/* QEMU's bdrv_lookup_bs: strata has no named devices, so a device name
 * never matches and only node-name finds a node. */
static BlockNode *lookup(const char *device, const char *node_name,
                         Error **errp)
{
    BlockNode *bs = node_name ? block_node_find(node_name) : NULL;
    if (!bs) {
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                   device ? device : "", node_name ? node_name : "");
    }
    return bs;
}

typedef struct BackingParent {
    BlockNode *child;
    BlockNode *parent;
} BackingParent;

static bool find_backing_parent(BlockNode *bs, void *opaque)
{
    BackingParent *b = opaque;
    if (block_node_backing(bs) == b->child) {
        b->parent = bs;
        return false;
    }
    return true;
}

bool qmp_node_backing_blocked(BlockNode *bs, Error **errp)
{
    BackingParent b = { .child = bs };
    block_graph_foreach(find_backing_parent, &b);
    if (b.parent) {
        error_setg(errp, "Node '%s' is busy: node is used as backing hd of "
                   "'%s'", block_node_name(bs), block_node_name(b.parent));
        return true;
    }
    return false;
}

/* QEMU's op blockers on the node to snapshot: a job's, and the one a
 * backing link puts on its backing node. */
static bool node_blocked(BlockNode *bs, Error **errp)
{
    return job_node_busy(bs, errp) || qmp_node_backing_blocked(bs, errp);
}

/* blockdev-snapshot-sync's overlay: its file (unless mode is existing)
 * and its node, opened without a backing node. */
static BlockNode *open_new_overlay(TxnAction *a, const char *node_name,
                                   Error **errp)
{
    const char *file = qmp_arg_str(a->data, "snapshot-file", "");
    const char *format = qmp_arg_str(a->data, "format", "qcow2");
    const char *snn = qmp_arg_str(a->data, "snapshot-node-name", NULL);
    const char *mode = qmp_arg_str(a->data, "mode", "absolute-paths");

    if (node_name && !snn) {
        error_setg(errp, "New overlay node-name missing");
        return NULL;
    }
    if (snn && block_node_find(snn)) {
        error_setg(errp, "New overlay node-name already in use");
        return NULL;
    }
    if (strcmp(mode, "existing")) {
        if (!block_driver_known(format)) {
            error_setg(errp, "Unknown file format '%s'", format);
            return NULL;
        }
        const char *backing = block_node_filename(a->old_bs);
        if (backing && !strcmp(backing, file)) {
            error_setg(errp, "Error: Trying to create an image with the same "
                       "filename as the backing file");
            return NULL;
        }
        if (strcmp(format, "qcow2")) {
            error_setg(errp, "Backing file not supported for file format "
                       "'%s'", format);
            return NULL;
        }
        json_t *o = json_pack("{s:I, s:s, s:s}",
                              "size", (json_int_t)block_node_size(a->old_bs),
                              "backing_file", backing ? backing : "",
                              "backing_fmt",
                              block_node_driver_name(a->old_bs));
        bool ok = o && block_create(format, file, o, errp);
        json_decref(o);
        if (!ok) {
            return NULL;
        }
    }
    json_t *o = json_pack("{s:s, s:{s:s, s:s}, s:n, s:b}",
                          "driver", format,
                          "file", "driver", "file", "filename", file,
                          "backing",
                          "read-only", block_node_read_only(a->old_bs));
    if (o && snn) {
        json_object_set_new(o, "node-name", json_string(snn));
    }
    BlockNode *bs = o ? block_node_open(o, errp) : NULL;
    json_decref(o);
    return bs;
}

static bool snapshot_prepare(TxnAction *a, Error **errp)
{
    bool sync = a->ops == &txn_blockdev_snapshot_sync;
    const char *device = sync ? qmp_arg_str(a->data, "device", NULL)
                              : qmp_arg_str(a->data, "node", NULL);
    const char *node_name = sync ? qmp_arg_str(a->data, "node-name", NULL)
                                 : device;

    if (a->grouped) {
        error_setg(errp, "Action '%s' does not support Transaction property "
                   "completion-mode = grouped", a->ops->type);
        return false;
    }
    BlockNode *old = lookup(device, node_name, errp);
    if (!old) {
        return false;
    }
    block_node_ref(old);
    a->old_bs = old;
    if (node_blocked(old, errp)) {
        return false;
    }
    if (!block_node_read_only(old) && block_flush(old) < 0) {
        error_setg(errp, "An IO error has occurred");
        return false;
    }
    if (sync) {
        a->new_bs = open_new_overlay(a, node_name, errp);
    } else {
        const char *ref = qmp_arg_str(a->data, "overlay", "");
        a->new_bs = lookup(ref, ref, errp);
        if (a->new_bs) {
            block_node_ref(a->new_bs);
        }
    }
    if (!a->new_bs) {
        return false;
    }
    BlockNode *ov = a->new_bs;
    if (block_node_has_readers(ov)) {
        error_setg(errp, "The overlay is already in use");
        return false;
    }
    if (block_node_is_filter(ov)) {
        error_setg(errp, "Filters cannot be used as overlays");
        return false;
    }
    if (block_node_backing(ov)) {
        error_setg(errp, "The overlay already has a backing image");
        return false;
    }
    if (!block_node_supports_backing(ov)) {
        error_setg(errp, "The overlay does not support backing images");
        return false;
    }
    if (!block_node_append(ov, old, errp)) {
        return false;
    }
    a->appended = true;
    return true;
}

/* What reached the old node before its parents moved is made durable
 * now, so its image is final from the snapshot point on; as QEMU, the
 * node becomes read-only (unless it copies on read, which writes). */
static void snapshot_commit(TxnAction *a)
{
    if (block_node_copy_on_read(a->old_bs)) {
        (void)block_flush(a->old_bs);
    } else {
        block_node_make_read_only(a->old_bs);
    }
}

static void snapshot_abort(TxnAction *a)
{
    if (a->appended) {
        block_node_unappend(a->new_bs, a->old_bs);
        a->appended = false;
    }
}

static void snapshot_clean(TxnAction *a)
{
    /* After a commit the overlay lives on through its new parents (and
     * its backing link holds the old node); after an abort a node
     * blockdev-snapshot-sync opened goes away here. */
    if (a->new_bs) {
        block_node_unref(a->new_bs);
    }
    if (a->old_bs) {
        block_node_unref(a->old_bs);
    }
}

const TxnActionOps txn_blockdev_snapshot = {
    .type = "blockdev-snapshot",
    .args = snapshot_members,
    .prepare = snapshot_prepare,
    .commit = snapshot_commit,
    .abort = snapshot_abort,
    .clean = snapshot_clean,
};

const TxnActionOps txn_blockdev_snapshot_sync = {
    .type = "blockdev-snapshot-sync",
    .args = snapshot_sync_members,
    .prepare = snapshot_prepare,
    .commit = snapshot_commit,
    .abort = snapshot_abort,
    .clean = snapshot_clean,
};

/* The commands: a transaction of one action. */
static json_t *run_one(const char *type, const QmpArgSpec *spec,
                       json_t *args, Error **errp)
{
    if (!qmp_args_check(args, "", spec, errp)) {
        return NULL;
    }
    json_t *actions = json_pack("[{s:s, s:O}]", "type", type, "data", args);
    if (!actions) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    bool ok = qmp_transaction_run(actions, false, errp);
    json_decref(actions);
    return ok ? json_object() : NULL;
}

static json_t *cmd_blockdev_snapshot(json_t *args, Error **errp)
{
    return run_one("blockdev-snapshot", snapshot_members, args, errp);
}

static json_t *cmd_blockdev_snapshot_sync(json_t *args, Error **errp)
{
    return run_one("blockdev-snapshot-sync", snapshot_sync_members, args,
                   errp);
}

void qmp_register_snapshot_commands(void)
{
    qmp_register_command_args("blockdev-snapshot", cmd_blockdev_snapshot,
                              qapi_BlockdevSnapshot);
    qmp_register_command_args("blockdev-snapshot-sync",
                              cmd_blockdev_snapshot_sync,
                              qapi_BlockdevSnapshotSync);
}
