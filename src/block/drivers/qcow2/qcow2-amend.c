/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 amend (qemu-img amend -o): the options an existing
 * image can change, checked and applied in QEMU's order and with its
 * texts: an upgrade to compat=1.1 first (later steps may need it), then
 * lazy refcounts, the refcount width, the size, and a downgrade to
 * compat=0.10 last (after the steps that remove what v2 cannot hold).
 *
 * A downgrade turns zero clusters, which v2 cannot express, into what
 * v2 reads the same: nothing at all in an image without a backing file,
 * else a cluster of zeroes -- in the active L1 table and in every
 * snapshot's.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-check-int.h"
#include "util/cleanup.h"

/* In the order QEMU walks them: errors come in this order. */
const BlockCreateOpt qcow2_amend_opts[] = {
    { "size", BLOCK_OPT_SIZE, "Virtual disk size", NULL },
    { "compat", BLOCK_OPT_STRING,
      "Compatibility level (v2 [0.10] or v3 [1.1])", NULL },
    { "backing_file", BLOCK_OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", BLOCK_OPT_STRING, "Image format of the base image",
      NULL },
    { "data_file", BLOCK_OPT_STRING, "File name of an external data file",
      NULL },
    { "data_file_raw", BLOCK_OPT_BOOL,
      "The external data file must stay valid as a raw image", NULL },
    { "lazy_refcounts", BLOCK_OPT_BOOL, "Postpone refcount updates", NULL },
    { "refcount_bits", BLOCK_OPT_NUMBER,
      "Width of a reference count entry in bits", NULL },
    { "encrypt.keyslot", BLOCK_OPT_NUMBER,
      "Select a single keyslot to modify explicitly", NULL },
    { "encrypt.state", BLOCK_OPT_STRING,
      "Select new state of affected keyslots (active/inactive)", NULL },
    { "encrypt.old-secret", BLOCK_OPT_STRING,
      "Select all keyslots that match this password", NULL },
    { "encrypt.new-secret", BLOCK_OPT_STRING,
      "New secret to set in the matching keyslots. Empty string to erase",
      NULL },
    { "encrypt.iter-time", BLOCK_OPT_NUMBER,
      "Time to spend in PBKDF in milliseconds", NULL },
    { NULL, 0, NULL, NULL },
};

static bool opt_bool(json_t *v)
{
    const char *s = json_string_value(v);
    return json_is_true(v) || (s && (!strcmp(s, "on") || !strcmp(s, "true")));
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static int write_header(BlockNode *bs, Error **errp)
{
    int ret = qcow2_update_header(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update the image header");
    }
    return ret;
}

/* Makes every zero cluster of one L2 table something v2 reads the same;
 * returns the number of entries changed or -errno. */
static int expand_l2(BlockNode *bs, uint64_t l2_offset, bool has_backing)
{
    BDRVQcow2State *s = bs->opaque;
    CLEANUP_FREE uint64_t *l2 = malloc(s->cluster_size);
    CLEANUP_FREE uint8_t *zeroes = calloc(1, s->cluster_size);
    if (!l2 || !zeroes) {
        return -ENOMEM;
    }
    int ret = block_read(bs->file, l2_offset, s->cluster_size, l2,
                         BLOCK_REQ_METADATA);
    if (ret < 0) {
        return ret;
    }
    uint64_t l2_refcount;
    ret = qcow2_get_refcount_locked(bs, l2_offset >> s->cluster_bits,
                                    &l2_refcount);
    if (ret < 0) {
        return ret;
    }
    int changed = 0;
    for (uint64_t i = 0; i < s->l2_entries; i++) {
        uint64_t e = be64toh(l2[i]);
        Qcow2ClusterType t = qcow2_cluster_type(s, e);
        uint64_t host;
        if (t == QCOW2_CLUSTER_ZERO_PLAIN) {
            if (!has_backing) {
                /* Unallocated reads as zeroes without a backing file. */
                l2[i] = 0;
                changed++;
                continue;
            }
            ret = qcow2_alloc_clusters_locked(bs, 1, &host);
            if (ret < 0) {
                return ret;
            }
            if (l2_refcount > 1) {
                /* Every L1 table sharing this L2 table owns it. */
                ret = qcow2_set_refcount_locked(bs, host >> s->cluster_bits,
                                                l2_refcount);
                if (ret < 0) {
                    return ret;
                }
            }
        } else if (t == QCOW2_CLUSTER_ZERO_ALLOC) {
            host = e & QCOW2_L2E_OFFSET_MASK;
            uint64_t data_refcount;
            ret = qcow2_get_refcount_locked(bs, host >> s->cluster_bits,
                                            &data_refcount);
            if (ret < 0) {
                return ret;
            }
            if (data_refcount > l2_refcount) {
                /* Another L2 table (a snapshot's) holds this cluster,
                 * maybe as data: zeroes written in place would reach it.
                 * (qemu-img 7.2 writes them anyway and damages the
                 * snapshot.)  Fresh zeroes for this table instead. */
                uint64_t fresh;
                ret = qcow2_alloc_clusters_locked(bs, 1, &fresh);
                if (ret == 0 && l2_refcount > 1) {
                    ret = qcow2_set_refcount_locked(
                        bs, fresh >> s->cluster_bits, l2_refcount);
                }
                if (ret == 0) {
                    ret = qcow2_update_refcount_locked(
                        bs, host, s->cluster_size, -(int64_t)l2_refcount);
                }
                if (ret < 0) {
                    return ret;
                }
                host = fresh;
            }
        } else {
            continue;
        }
        ret = qcow2_check_data_write_locked(bs, host, s->cluster_size);
        if (ret == 0) {
            ret = block_write(bs->file, host, s->cluster_size, zeroes, 0);
        }
        if (ret < 0) {
            return ret;
        }
        l2[i] = htobe64(l2_refcount == 1 ? host | QCOW2_OFLAG_COPIED : host);
        changed++;
    }
    if (changed) {
        qcow2_cache_discard(s->l2_cache, l2_offset);
        ret = qcow2_write_meta_locked(bs, l2_offset, s->cluster_size, l2,
                                      QCOW2_META_L2);
        if (ret < 0) {
            return ret;
        }
    }
    return changed;
}

/* Progress as qemu-img reports it for a downgrade: one step per L1
 * entry, of the active table and of every snapshot's. */
typedef struct ExpandProgress {
    BlockAmendProgress *cb;
    void *opaque;
    uint64_t done, total;
} ExpandProgress;

static int expand_l1(BlockNode *bs, const uint64_t *l1, uint32_t l1_size,
                     bool has_backing, ExpandProgress *p)
{
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2_offset = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (l2_offset) {
            int ret = expand_l2(bs, l2_offset, has_backing);
            if (ret < 0) {
                return ret;
            }
        }
        p->done++;
        if (p->cb) {
            p->cb(p->opaque, p->done, p->total);
        }
    }
    return 0;
}

/* QEMU's qcow2_expand_zero_clusters: the active table, then each
 * snapshot's. */
static int expand_zero_clusters(BlockNode *bs, BlockAmendProgress *progress,
                                void *opaque)
{
    BDRVQcow2State *s = bs->opaque;
    bool has_backing = s->header.backing_file != NULL;
    int ret = qcow2_flush_caches_locked(bs);
    if (ret < 0) {
        return ret;
    }
    Qcow2Check c = { .bs = bs, .s = s };
    BlockCheckResult res = { 0 };
    ret = qcow2_check_read_snapshots(&c, &res);
    if (ret < 0 || res.corruptions) {
        qcow2_check_free_snapshots(&c);
        return ret < 0 ? ret : -EIO;
    }
    ExpandProgress p = { progress, opaque, 0, s->l1_size };
    for (uint32_t i = 0; i < c.nb_snapshots; i++) {
        p.total += c.snapshots[i].l1_size;
    }
    ret = expand_l1(bs, s->l1_table, s->l1_size, has_backing, &p);
    for (uint32_t i = 0; ret == 0 && i < c.nb_snapshots; i++) {
        uint64_t *l1 = NULL;
        /* As QEMU: a snapshot's table that cannot be where the entry
         * says is never walked (its "L2 tables" would be garbage). */
        const Qcow2CheckSnapshot *sn = &c.snapshots[i];
        if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
            error_report("Snapshot L1 table too large");
            ret = -EFBIG;
            break;
        }
        if ((uint64_t)INT64_MAX - (uint64_t)sn->l1_size * 8 < sn->l1_offset ||
            (sn->l1_offset & (s->cluster_size - 1))) {
            error_report("Snapshot L1 table offset invalid");
            ret = -EINVAL;
            break;
        }
        ret = qcow2_check_read_table(&c, c.snapshots[i].l1_offset,
                                     c.snapshots[i].l1_size, &l1);
        if (ret == 0) {
            ret = expand_l1(bs, l1, c.snapshots[i].l1_size, has_backing, &p);
        }
        free(l1);
    }
    qcow2_check_free_snapshots(&c);
    if (ret == 0) {
        ret = qcow2_flush_caches_locked(bs);
    }
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    return ret;
}

static int downgrade(BlockNode *bs, BlockAmendProgress *progress,
                     void *opaque, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->refcount_order != 4) {
        error_setg(errp, "compat=0.10 requires refcount_bits=16");
        return -ENOTSUP;
    }
    if (qcow2_has_data_file(s)) {
        error_setg(errp, "Cannot downgrade an image with a data file");
        return -ENOTSUP;
    }
    /* v2 readers need not know a snapshot's own size or a VM state past
     * 32 bits: each snapshot must be of the image's size, as QEMU asks. */
    for (uint32_t i = 0; i < s->header.nb_snapshots && s->snapshots; i++) {
        if (s->snapshots[i].vm_state_size > UINT32_MAX ||
            s->snapshots[i].disk_size != s->header.size) {
            error_setg(errp, "Internal snapshots prevent downgrade of image");
            return -ENOTSUP;
        }
    }
    uint64_t incompat = s->header.incompatible_features &
                        ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_COMPRESSION);
    if (incompat) {
        error_setg(errp, "Cannot downgrade an image with incompatible "
                   "features %#" PRIx64 " set", incompat);
        return -ENOTSUP;
    }
    if (s->header.compression_type != QCOW2_COMPRESSION_ZLIB) {
        /* v2 has no compression type: zstd clusters would read as
         * garbage.  (QEMU 7.2 goes ahead; strata will not.) */
        error_setg(errp, "Cannot downgrade an image with compression type "
                   "'zstd': compat=0.10 only knows zlib");
        return -ENOTSUP;
    }
    int ret;
    {
        LOCK_GUARD(&s->lock);
        ret = expand_zero_clusters(bs, progress, opaque);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to turn zero into data clusters");
        return ret;
    }
    Qcow2Header old = s->header;
    s->header.version = 2;
    s->header.incompatible_features = 0;
    s->header.compatible_features = 0;
    s->header.autoclear_features = 0;
    s->lazy_refcounts = false;
    ret = write_header(bs, errp);
    if (ret < 0) {
        s->header.version = old.version;
        s->header.incompatible_features = old.incompatible_features;
        s->header.compatible_features = old.compatible_features;
        s->header.autoclear_features = old.autoclear_features;
    }
    return ret;
}

bool qcow2_amend(BlockNode *bs, json_t *opts, bool force,
                 BlockAmendProgress *progress, void *opaque, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t old_version = s->header.version, new_version = old_version;
    bool lazy = s->lazy_refcounts;
    uint64_t refcount_bits = 1ULL << s->refcount_order;
    uint64_t new_size = 0;
    bool has_backing_opt = false;
    const char *backing_file = NULL, *backing_fmt = NULL;
    const char *data_file = NULL;  /* "": drop the name */
    int data_file_raw = -1;        /* -1: unchanged */

    for (const BlockCreateOpt *d = qcow2_amend_opts; d->name; d++) {
        json_t *v = json_object_get(opts, d->name);
        if (!v) {
            continue;
        }
        const char *str = json_string_value(v);
        if (!strcmp(d->name, "compat")) {
            if (!strcmp(str, "0.10") || !strcmp(str, "v2")) {
                new_version = 2;
            } else if (!strcmp(str, "1.1") || !strcmp(str, "v3")) {
                new_version = 3;
            } else {
                error_setg(errp, "Unknown compatibility level %s", str);
                return false;
            }
        } else if (!strcmp(d->name, "size")) {
            new_size = (uint64_t)json_integer_value(v);
        } else if (!strcmp(d->name, "backing_file")) {
            backing_file = str;
            has_backing_opt = true;
        } else if (!strcmp(d->name, "backing_fmt")) {
            backing_fmt = str;
            has_backing_opt = true;
        } else if (!strcmp(d->name, "lazy_refcounts")) {
            lazy = opt_bool(v);
        } else if (!strcmp(d->name, "refcount_bits")) {
            refcount_bits = (uint64_t)json_integer_value(v);
            if (refcount_bits == 0 || refcount_bits > 64 ||
                (refcount_bits & (refcount_bits - 1))) {
                error_setg(errp, "Refcount width must be a power of two and "
                           "may not exceed 64 bits");
                return false;
            }
        } else if (!strcmp(d->name, "data_file")) {
            if (str && !qcow2_has_data_file(s)) {
                error_setg(errp, "data-file can only be set for images that "
                           "use an external data file");
                return false;
            }
            data_file = str;
        } else if (!strcmp(d->name, "data_file_raw")) {
            data_file_raw = opt_bool(v);
            if (data_file_raw && !qcow2_data_file_raw(s)) {
                error_setg(errp, "data-file-raw cannot be set on existing "
                           "images");
                return false;
            }
        } else if (!strncmp(d->name, "encrypt.", 8)) {
            error_setg(errp, "Can't amend encryption options - encryption "
                       "not present");
            return false;
        }
    }

    if (new_version > old_version) {
        /* Two steps, as qemu-img reports an upgrade. */
        if (progress) {
            progress(opaque, 0, 2);
        }
        s->header.version = new_version;
        if (write_header(bs, errp) < 0) {
            s->header.version = old_version;
            return false;
        }
        if (progress) {
            progress(opaque, 1, 2);
            progress(opaque, 2, 2);
        }
    }
    if ((data_file || data_file_raw >= 0) &&
        !qcow2_amend_data_file(bs, data_file, data_file_raw, errp)) {
        return false;
    }
    if (has_backing_opt &&
        (!same_str(backing_file, s->header.backing_file) ||
         !same_str(backing_fmt, s->header.backing_format))) {
        error_setg(errp, "Cannot amend the backing file");
        error_append_hint(errp, "You can use 'qemu-img rebase' instead.\n");
        return false;
    }
    if (lazy != s->lazy_refcounts) {
        uint64_t before = s->header.compatible_features;
        if (lazy) {
            if (new_version < 3) {
                error_setg(errp, "Lazy refcounts only supported with "
                           "compatibility level 1.1 and above (use "
                           "compat=1.1 or greater)");
                return false;
            }
            s->header.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
        } else {
            /* Clean first: with the bit gone nothing would repair it. */
            int ret = qcow2_flush_caches(bs);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to make the image "
                                 "clean");
                return false;
            }
            s->header.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
            s->header.compatible_features &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
        }
        if (write_header(bs, errp) < 0) {
            s->header.compatible_features = before;
            return false;
        }
        s->lazy_refcounts = lazy;
        s->dirty_set_by_us = false;
    }
    if (refcount_bits != (1ULL << s->refcount_order)) {
        if (new_version < 3 && refcount_bits != 16) {
            error_setg(errp, "Refcount widths other than 16 bits require "
                       "compatibility level 1.1 or above (use compat=1.1 or "
                       "greater)");
            return false;
        }
        unsigned order = (unsigned)__builtin_ctzll(refcount_bits);
        if (!qcow2_change_refcount_order(bs, order, errp)) {
            return false;
        }
    }
    if (new_size && new_size != s->header.size) {
        /* Exactly the size asked for, as QEMU's amend does. */
        if (!block_truncate(bs, new_size, true, PREALLOC_OFF, errp)) {
            return false;
        }
    }
    if (new_version < old_version &&
        downgrade(bs, progress, opaque, errp) < 0) {
        return false;
    }
    (void)force;   /* only encryption changes need it: none here */
    return true;
}

/* QEMU's qcow2_change_refcount_order: new refcount blocks and table of
 * the new width are written beside the old ones, one header write
 * switches to them, and the old ones are freed. */
bool qcow2_change_refcount_order(BlockNode *bs, unsigned order,
                                 Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_flush_caches(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to flush the metadata caches");
        return false;
    }
    uint64_t nb_clusters = DIV_ROUND_UP(block_node_size(bs->file),
                                        s->cluster_size);
    if (order < s->refcount_order) {
        LOCK_GUARD(&s->lock);
        uint64_t max = qcow2_refcount_max(order);
        for (uint64_t i = 0; i < nb_clusters; i++) {
            uint64_t rc;
            ret = qcow2_get_refcount_locked(bs, i, &rc);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to read a refcount");
                return false;
            }
            if (rc > max) {
                error_setg(errp, "Cannot decrease refcount entry width to %i "
                           "bits: Cluster at offset %#" PRIx64 " has a "
                           "refcount of %" PRIu64, 1 << order,
                           i << s->cluster_bits, rc);
                return false;
            }
        }
    }

    /* The old structures, to free once the new ones are in force. */
    uint64_t old_rt_offset = s->reftable_offset;
    uint64_t old_rt_clusters = s->header.refcount_table_clusters;
    uint64_t old_entries = s->reftable_entries;
    CLEANUP_FREE uint64_t *old_reftable = malloc(old_entries * 8 + 8);
    if (!old_reftable) {
        error_setg(errp, "Out of memory");
        return false;
    }
    memcpy(old_reftable, s->reftable, old_entries * 8);

    /* Count every reference in the new width (the in-memory table packs
     * counts as refcount blocks of the width s says). */
    unsigned old_order = s->refcount_order;
    unsigned old_rb_bits = s->refblock_bits;
    uint64_t old_rb_entries = s->refblock_entries;
    s->refcount_order = order;
    s->refblock_bits = s->cluster_bits + 3 - order;
    s->refblock_entries = 1ULL << s->refblock_bits;
    Qcow2Check c = { .bs = bs, .s = s };
    BlockCheckResult res = { 0 };
    bool rebuild = false;
    uint64_t rt_offset = 0, rt_clusters = 0;
    ret = qcow2_imrt_resize(&c, nb_clusters);
    if (ret == 0) {
        ret = qcow2_check_read_snapshots(&c, &res);
    }
    if (ret == 0) {
        ret = qcow2_check_count_refs(&c, &res, 0, &rebuild);
    }
    if (ret == 0 && (res.corruptions || res.check_errors)) {
        ret = -EIO;
        error_setg(errp, "The image has errors: run 'check -r all' before "
                   "changing the refcount width");
    } else if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to count the references");
    }
    if (ret == 0) {
        ret = qcow2_check_write_refcount_structures(&c, &res, &rt_offset,
                                                    &rt_clusters, errp);
    }
    qcow2_check_free_snapshots(&c);
    free(c.imrt);
    if (ret < 0) {
        s->refcount_order = old_order;
        s->refblock_bits = old_rb_bits;
        s->refblock_entries = old_rb_entries;
        return false;
    }

    /* One header write: the old structures or the new ones. */
    Qcow2Header saved = s->header;
    s->header.refcount_order = order;
    s->header.refcount_table_offset = rt_offset;
    s->header.refcount_table_clusters = (uint32_t)rt_clusters;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        s->header.refcount_order = saved.refcount_order;
        s->header.refcount_table_offset = saved.refcount_table_offset;
        s->header.refcount_table_clusters = saved.refcount_table_clusters;
        s->refcount_order = old_order;
        s->refblock_bits = old_rb_bits;
        s->refblock_entries = old_rb_entries;
        error_setg_errno(errp, -ret, "Failed to update the image header");
        return false;
    }
    if (!qcow2_reload_metadata(bs, errp)) {
        return false;
    }

    /* The new counts include the old table and blocks: free them. */
    LOCK_GUARD(&s->lock);
    for (uint64_t i = 0; i < old_entries && ret == 0; i++) {
        uint64_t rb = old_reftable[i] & QCOW2_REFT_OFFSET_MASK;
        if (rb) {
            ret = qcow2_set_refcount_locked(bs, rb >> s->cluster_bits, 0);
        }
    }
    for (uint64_t i = 0; i < old_rt_clusters && ret == 0; i++) {
        ret = qcow2_set_refcount_locked(
            bs, (old_rt_offset >> s->cluster_bits) + i, 0);
    }
    if (ret == 0) {
        ret = qcow2_flush_caches_locked(bs);
    }
    if (ret < 0) {
        /* Only leaks are left: check -r leaks drops them. */
        error_setg_errno(errp, -ret, "Failed to free the old refcount "
                         "structures");
        return false;
    }
    return true;
}
