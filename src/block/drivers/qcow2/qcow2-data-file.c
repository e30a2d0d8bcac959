/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 external data files (incompatible feature bit 2).
 *
 * The image file keeps the metadata; guest data lives in a second node,
 * each cluster at its own guest offset.  No refcount covers data there,
 * so allocating a data cluster is only a matter of pointing the L2 entry
 * at the guest offset, and freeing one at most discards it (QEMU 7.2's
 * rules).  With the data-file-raw autoclear bit the data file is also a
 * valid raw image of the disk: zeroes are written through to it.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "block/block_core.h"
#include "block/drivers/qcow2/qcow2-io.h"
#include "util/cleanup.h"
#include "util/keyval.h"

int qcow2_alloc_data_locked(BlockNode *bs, uint64_t cluster, uint64_t nb,
                            uint64_t *host, bool *fresh)
{
    BDRVQcow2State *s = bs->opaque;
    if (qcow2_has_data_file(s)) {
        *host = cluster << s->cluster_bits;
        *fresh = false;
        return 0;
    }
    int ret = qcow2_alloc_clusters_locked(bs, nb, host);
    *fresh = ret == 0;
    return ret;
}

int qcow2_data_file_free_locked(BlockNode *bs, uint64_t l2e)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2ClusterType t = s->extended_l2 ? qcow2_cluster_type_ext(s, l2e)
                                        : qcow2_cluster_type(s, l2e);
    /* As QEMU: the data goes only when discard requests are passed down.
     * Done now, not when the L2 table is written: the guest cluster may
     * be written again meanwhile, at the same place. */
    if ((t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC) &&
        s->pass_discard_request && s->data_file &&
        s->data_file->discard == BLOCK_DISCARD_UNMAP) {
        block_discard(s->data_file, l2e & QCOW2_L2E_OFFSET_MASK,
                      s->cluster_size);
    }
    return 0;
}

int qcow2_check_data_file_entry_locked(BlockNode *bs, uint64_t l2e,
                                       bool has_host, uint64_t guest,
                                       uint64_t l2_offset, uint64_t l2_index)
{
    BDRVQcow2State *s = bs->opaque;
    if (!qcow2_has_data_file(s)) {
        return 0;
    }
    if (l2e & QCOW2_OFLAG_COMPRESSED) {
        return qcow2_signal_corruption_locked(
            bs, true, -1, -1,
            "Compressed cluster entry found in image with external data "
            "file (L2 offset: %#" PRIx64 ", L2 index: %#" PRIx64 ")",
            l2_offset, l2_index);
    }
    uint64_t host = l2e & QCOW2_L2E_OFFSET_MASK;
    uint64_t guest_cluster = guest & ~(s->cluster_size - 1);
    if (has_host && host != guest_cluster) {
        /* Writing there would overwrite another guest cluster's data. */
        return qcow2_signal_corruption_locked(
            bs, true, -1, -1,
            "External data file host cluster offset %#" PRIx64 " does not "
            "match guest cluster offset: %#" PRIx64 ", L2 index: %#" PRIx64
            ")", host, guest_cluster, l2_index);
    }
    return 0;
}

int qcow2_flush_data_file(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (!s->data_file || s->data_file == bs->file) {
        return 0;
    }
    return block_flush(s->data_file);
}

int qcow2_data_file_zero_raw(BlockNode *bs, uint64_t offset, uint64_t bytes,
                             int flags)
{
    BDRVQcow2State *s = bs->opaque;
    if (!qcow2_has_data_file(s) || !qcow2_data_file_raw(s)) {
        return 0;
    }
    /* The raw image must read as the disk does, before the L2 entries
     * say zero. */
    return block_write_zeroes(s->data_file, offset, bytes,
                              flags & ~BLOCK_REQ_FUA);
}

/* Opens the data file the header names, as QEMU does: the name is a
 * file name (or protocol:...) used as it is, so a relative name is
 * taken from the current directory. */
static BlockNode *open_named(BlockNode *bs, const char *name, int flags,
                             Error **errp)
{
    json_t *child = block_protocol_options(name, NULL, errp);
    if (!child) {
        return NULL;
    }
    CLEANUP_JSON json_t *wrap = json_pack("{s:o}", "data-file", child);
    if (!wrap) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    return block_open_child(bs, wrap, "data-file", flags, errp);
}

bool qcow2_open_data_file(BlockNode *bs, json_t *opts, int flags,
                          Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    bool external = qcow2_has_data_file(s);
    if (flags & BLOCK_O_NO_IO) {
        /* As qemu-img info: an untrusted image may be looked at without
         * opening the files it names. */
        json_object_del(opts, "data-file");
        s->data_file = external ? NULL : bs->file;
        return true;
    }
    BlockNode *df = NULL;
    if (json_object_get(opts, "data-file")) {
        df = block_open_child(bs, opts, "data-file", flags, errp);
        if (!df) {
            return false;
        }
    }
    if (!external) {
        if (df) {
            block_node_detach_child(df);
            error_setg(errp, "'data-file' can only be set for images with an "
                       "external data file");
            return false;
        }
        if (qcow2_data_file_raw(s)) {
            error_setg(errp, "data-file-raw requires a data file");
            return false;
        }
        s->data_file = bs->file;
        return true;
    }
    if (!df && s->header.data_file) {
        df = open_named(bs, s->header.data_file, flags, errp);
        if (!df) {
            return false;
        }
    }
    if (!df) {
        error_setg(errp, "'data-file' is required for this image");
        return false;
    }
    s->data_file = df;
    return true;
}

void qcow2_close_data_file(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->data_file && s->data_file != bs->file) {
        block_node_detach_child(s->data_file);
    }
    s->data_file = NULL;
}

int64_t qcow2_get_allocated_file_size(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t size = block_allocated_file_size(bs->file);
    /* As QEMU: what the image takes is its file's and its data file's. */
    if (size >= 0 && s->data_file && s->data_file != bs->file) {
        int64_t data = block_allocated_file_size(s->data_file);
        if (data < 0) {
            return data;
        }
        size += data;
    }
    return size;
}

bool qcow2_amend_data_file(BlockNode *bs, const char *name, int raw,
                           Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    char *new_name = NULL;
    if (name && name[0] && !(new_name = strdup(name))) {
        error_setg(errp, "Out of memory");
        return false;
    }
    char *old_name = s->header.data_file;
    uint64_t old_autoclear = s->header.autoclear_features;
    if (name) {
        s->header.data_file = new_name;
    }
    if (raw == 0) {
        s->header.autoclear_features &= ~QCOW2_AUTOCLEAR_DATA_RAW;
    } else if (raw > 0) {
        s->header.autoclear_features |= QCOW2_AUTOCLEAR_DATA_RAW;
    }
    int ret = qcow2_update_header(bs);
    if (ret < 0) {
        if (name) {
            s->header.data_file = old_name;
            free(new_name);
        }
        s->header.autoclear_features = old_autoclear;
        error_setg_errno(errp, -ret, "Failed to update the image header");
        return false;
    }
    if (name) {
        free(old_name);
    }
    return true;
}
