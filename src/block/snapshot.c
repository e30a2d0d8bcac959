/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - internal snapshots: the format-independent part of qemu-img
 * snapshot.  A node whose driver keeps no snapshots (raw, a filter)
 * hands the call to the node its data sits on, as QEMU falls back to a
 * node's primary child, so `snapshot -l` of a raw image lists nothing
 * instead of failing.
 */
#include <errno.h>
#include <stdlib.h>

#include "block/block_int.h"

/* The node of bs's file chain whose driver keeps snapshots, or NULL. */
static BlockNode *snapshot_node(BlockNode *bs)
{
    for (; bs; bs = bs->file) {
        if (bs->drv->snapshot_list) {
            return bs;
        }
    }
    return NULL;
}

int block_snapshot_list(BlockNode *bs, BlockSnapshotInfo **list)
{
    BlockNode *n = snapshot_node(bs);
    *list = NULL;
    return n ? n->drv->snapshot_list(n, list) : -ENOTSUP;
}

void block_snapshot_list_free(BlockSnapshotInfo *list, int count)
{
    for (int i = 0; list && i < count; i++) {
        free(list[i].id);
        free(list[i].name);
    }
    free(list);
}

int block_snapshot_create(BlockNode *bs, const BlockSnapshotInfo *sn)
{
    BlockNode *n = snapshot_node(bs);
    if (!n) {
        return -ENOTSUP;
    }
    block_drain_begin(n);
    int ret = n->drv->snapshot_create(n, sn);
    block_drain_end(n);
    return ret;
}

int block_snapshot_goto(BlockNode *bs, const char *id_or_name, Error **errp)
{
    BlockNode *n = snapshot_node(bs);
    if (!n) {
        error_setg(errp, "Block driver does not support snapshots");
        return -ENOTSUP;
    }
    block_drain_begin(n);
    int ret = n->drv->snapshot_goto(n, id_or_name);
    block_drain_end(n);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to load snapshot");
    }
    return ret;
}

int block_snapshot_delete(BlockNode *bs, const char *id, const char *name,
                          Error **errp)
{
    if (!id && !name) {
        error_setg(errp, "snapshot_id and name are both NULL");
        return -EINVAL;
    }
    BlockNode *n = snapshot_node(bs);
    if (!n) {
        /* The device name is empty outside a VM, as in qemu-img. */
        error_setg(errp, "Block format '%s' used by device '' does not "
                   "support internal snapshot deletion",
                   bs->drv->format_name);
        return -ENOTSUP;
    }
    block_drain_begin(n);
    int ret = n->drv->snapshot_delete(n, id, name, errp);
    block_drain_end(n);
    return ret;
}

int block_snapshot_load_tmp(BlockNode *bs, const char *id, const char *name,
                            Error **errp)
{
    if (!id && !name) {
        error_setg(errp, "snapshot_id and name are both NULL");
        return -EINVAL;
    }
    if (!bs->read_only) {
        error_setg(errp, "Device is not readonly");
        return -EINVAL;
    }
    if (!bs->drv->snapshot_load_tmp) {
        error_setg(errp, "Block format '%s' used by device '' does not "
                   "support temporarily loading internal snapshots",
                   bs->drv->format_name);
        return -ENOTSUP;
    }
    return bs->drv->snapshot_load_tmp(bs, id, name, errp);
}

int block_snapshot_load_tmp_by_id_or_name(BlockNode *bs,
                                          const char *id_or_name,
                                          Error **errp)
{
    Error *err = NULL;
    int ret = block_snapshot_load_tmp(bs, id_or_name, NULL, &err);
    if (ret == -ENOENT || ret == -EINVAL) {
        error_free(err);
        err = NULL;
        ret = block_snapshot_load_tmp(bs, NULL, id_or_name, &err);
    }
    if (err) {
        error_propagate(errp, err);
    }
    return ret;
}

json_t *block_snapshot_info_json(BlockNode *bs)
{
    BlockSnapshotInfo *list;
    int n = block_snapshot_list(bs, &list);
    if (n <= 0) {
        return NULL;
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const BlockSnapshotInfo *sn = &list[i];
        json_t *o = json_object();
        if (sn->icount != UINT64_MAX) {
            json_object_set_new(o, "icount",
                                json_integer((json_int_t)sn->icount));
        }
        json_object_set_new(o, "vm-clock-nsec", json_integer(
                                (json_int_t)(sn->vm_clock_nsec % 1000000000)));
        json_object_set_new(o, "name", json_string(sn->name));
        json_object_set_new(o, "date-sec", json_integer(sn->date_sec));
        json_object_set_new(o, "date-nsec", json_integer(sn->date_nsec));
        json_object_set_new(o, "vm-clock-sec", json_integer(
                                (json_int_t)(sn->vm_clock_nsec / 1000000000)));
        json_object_set_new(o, "id", json_string(sn->id));
        json_object_set_new(o, "vm-state-size",
                            json_integer((json_int_t)sn->vm_state_size));
        json_array_append_new(arr, o);
    }
    block_snapshot_list_free(list, n);
    return arr;
}
