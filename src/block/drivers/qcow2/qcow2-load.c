/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2: loading the header and tables, the open policy (what
 * strata refuses to open, and why) and the driver's open options.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "block/image-params.h"
#include "util/cleanup.h"
#include "util/keyval.h"

#define QCOW2_DEFAULT_L2_CACHE_MAX (32u << 20)

/* ---- loading metadata ---- */

static bool read_table(BlockNode *bs, uint64_t offset, uint64_t entries,
                       uint64_t alloc_entries, uint64_t **out,
                       const char *what, Error **errp)
{
    uint64_t *t = calloc(MAX(alloc_entries, 1), sizeof(uint64_t));
    if (!t) {
        error_setg(errp, "Could not allocate the %s", what);
        return false;
    }
    if (entries) {
        int ret = block_read(bs->file, offset, entries * 8, t,
                             BLOCK_REQ_METADATA);
        if (ret < 0) {
            free(t);
            error_setg_errno(errp, -ret, "Could not read %s", what);
            return false;
        }
    }
    for (uint64_t i = 0; i < entries; i++) {
        t[i] = be64toh(t[i]);
    }
    *out = t;
    return true;
}

/* Loads the first cluster of the image and decodes the header. */
static bool load_header(BlockNode *bs, Qcow2Header *h, uint8_t **raw,
                        size_t *raw_len, Error **errp)
{
    uint64_t file_size = block_node_size(bs->file);
    uint8_t first[512] = { 0 };
    size_t len = MIN(file_size, sizeof(first));
    int ret = block_read(bs->file, 0, len, first, BLOCK_REQ_METADATA);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        return false;
    }
    uint32_t cb;
    memcpy(&cb, first + 20, 4);
    cb = be32toh(cb);
    if (cb < QCOW2_MIN_CLUSTER_BITS || cb > QCOW2_MAX_CLUSTER_BITS) {
        cb = QCOW2_MIN_CLUSTER_BITS; /* decode reports the bad value */
    }
    len = MIN(file_size, 1ull << cb);
    uint8_t *buf = calloc(1, MAX(len, sizeof(first)));
    if (!buf) {
        error_setg(errp, "Could not allocate memory for the qcow2 header");
        return false;
    }
    ret = len ? block_read(bs->file, 0, len, buf, BLOCK_REQ_METADATA) : 0;
    if (ret < 0) {
        free(buf);
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        return false;
    }
    if (!qcow2_header_decode(buf, len, file_size, h, errp)) {
        free(buf);
        return false;
    }
    *raw = buf;
    *raw_len = len;
    return true;
}

/* Names the unsupported incompatible bits from the image's feature-name
 * table (which the header codec does not keep), as QEMU reports them. */
static void describe_features(const uint8_t *raw, size_t len,
                              uint32_t header_length, uint64_t mask,
                              char *out, size_t out_len)
{
    out[0] = '\0';
    size_t used = 0;
    uint64_t named = 0;
    for (size_t pos = header_length; pos + 8 <= len;) {
        uint32_t type, elen;
        memcpy(&type, raw + pos, 4);
        memcpy(&elen, raw + pos + 4, 4);
        type = be32toh(type);
        elen = be32toh(elen);
        if (type == QCOW2_EXT_END || elen > len - pos - 8) {
            break;
        }
        if (type == QCOW2_EXT_FEATURE_TABLE) {
            /* Like QEMU, read the table as if padded with zeroes: a short
             * last entry still counts, and an entry with an empty name
             * ends the table.  Each bit is named once. */
            for (size_t i = 0; i < elen; i += 48) {
                uint8_t e[48] = { 0 };
                memcpy(e, raw + pos + 8 + i, MIN((size_t)48, elen - i));
                if (e[2] == '\0') {
                    break;
                }
                if (e[0] != 0 || e[1] >= 64 || !(mask & ~named &
                                                 (1ull << e[1]))) {
                    continue;
                }
                named |= 1ull << e[1];
                used += snprintf(out + used, out_len - MIN(used, out_len),
                                 "%s%.46s", used ? ", " : "", (char *)e + 2);
                used = MIN(used, out_len);
            }
        }
        pos += 8 + ALIGN_UP((size_t)elen, 8);
    }
    if (mask & ~named) {
        snprintf(out + used, out_len - MIN(used, out_len),
                 "%sUnknown incompatible feature: %" PRIx64,
                 used ? ", " : "", mask & ~named);
    }
}

bool qcow2_check_open_policy(BlockNode *bs, const uint8_t *raw, size_t len,
                              bool writable, bool for_check, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Header *h = &s->header;
    uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown) {
        char names[512];
        describe_features(raw, len, h->header_length, unknown, names,
                          sizeof(names));
        error_setg(errp, "Unsupported qcow2 feature(s): %s", names);
        return false;
    }
    if (h->crypt_method != QCOW2_CRYPT_NONE) {
        error_setg(errp, "qcow2: Encryption is not supported (image '%s' is "
                   "encrypted with method %" PRIu32 ")", bs->filename,
                   h->crypt_method);
        return false;
    }
    if (h->compression_type != QCOW2_COMPRESSION_ZLIB &&
        h->compression_type != QCOW2_COMPRESSION_ZSTD) {
        error_setg(errp, "qcow2: Unknown compression type %u in image '%s'",
                   h->compression_type, bs->filename);
        return false;
    }
    if (h->compression_type != QCOW2_COMPRESSION_ZLIB &&
        !(h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION)) {
        error_setg(errp, "qcow2: Compression type incompatible feature bit "
                   "must be set for a non-zlib compression type");
        return false;
    }
    /* As QEMU (BDRV_O_CHECK): `check -r` must be able to open a corrupt
     * image read/write, or it could never clear the bit. */
    if (writable && !for_check &&
        (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)) {
        error_setg(errp, "qcow2: Image is corrupt; cannot be opened "
                   "read/write");
        return false;
    }
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    if (DIV_ROUND_UP(h->size, l2_span) > h->l1_size) {
        error_setg(errp, "L1 table is too small");
        return false;
    }
    return true;
}

void qcow2_free_state(BDRVQcow2State *s)
{
    qcow2_cache_free(s->l2_cache);
    qcow2_cache_free(s->refblock_cache);
    s->l2_cache = s->refblock_cache = NULL;
    free(s->l1_table);
    free(s->reftable);
    s->l1_table = s->reftable = NULL;
    free(s->pending_free);
    s->pending_free = NULL;
    s->pending_free_count = s->pending_free_cap = 0;
    qcow2_reuse_clear(s);
    free(s->reuse);
    s->reuse = NULL;
    s->reuse_bits = 0;
    qcow2_meta_clear(s);
    qcow2_free_snapshots(s);
    qcow2_header_free(&s->header);
}

/* ---- where the image ends ---- */

/* Index of the last non-zero entry of a refcount block, or -1. */
static int64_t last_used_entry(const uint8_t *block, uint64_t bytes,
                               unsigned order)
{
    uint64_t b = bytes;
    while (b > 0 && block[b - 1] == 0) {
        b--;
    }
    if (b == 0) {
        return -1;
    }
    b--;
    /* Entries narrower than a byte share it: find the highest one set. */
    uint64_t lo = (b * 8) >> order, hi = (b * 8 + 7) >> order;
    for (uint64_t e = hi + 1; e-- > lo;) {
        if (qcow2_refblock_get(block, e, order)) {
            return (int64_t)e;
        }
    }
    return -1;
}

/* The end of the highest cluster with a non-zero refcount: the last
 * non-zero refcount table entry, then its block's last non-zero entry
 * (earlier blocks when that one is all zero).  Blocks a corrupt table
 * places off the image are skipped here and reported when used. */
static int refcount_end(BlockNode *bs, uint64_t *end)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t file_size = block_node_size(bs->file);
    uint64_t max_cluster = QCOW2_MAX_HOST_OFFSET >> s->cluster_bits;
    CLEANUP_FREE uint8_t *block = NULL;

    *end = 0;
    for (uint64_t i = s->reftable_entries; i-- > 0;) {
        uint64_t rb = s->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        if (!rb || (rb & (cs - 1)) || rb >= file_size) {
            continue;
        }
        if (!block && !(block = malloc(cs))) {
            return -ENOMEM;
        }
        /* A file may end inside its last cluster. */
        uint64_t len = MIN(cs, file_size - rb);
        memset(block + len, 0, cs - len);
        int ret = block_read(bs->file, rb, len, block, BLOCK_REQ_METADATA);
        if (ret < 0) {
            return ret;
        }
        int64_t e = last_used_entry(block, cs, s->refcount_order);
        if (e < 0) {
            continue;
        }
        if (i > (max_cluster >> s->refblock_bits)) {
            *end = QCOW2_MAX_HOST_OFFSET;
            return 0;
        }
        uint64_t cluster = (i << s->refblock_bits) + (uint64_t)e + 1;
        *end = MIN(cluster, max_cluster) << s->cluster_bits;
        return 0;
    }
    return 0;
}

/* Sets s->next_alloc, where the next cluster is appended: past every
 * cluster in use (refcounts) and past the header, L1 table and refcount
 * table themselves.  A regular file keeps its size as the floor (what
 * lies past the last reference there is leaked space, reclaimed by
 * check, not reused); a block device has no such floor.  The refcounts
 * of a dirty image (lazy refcounts) may lag behind its L2 tables, but
 * such an image is only written after the repair at open, which reloads
 * the metadata and so comes back here with exact refcounts. */
static bool set_allocation_cursor(BlockNode *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t end;
    int ret = refcount_end(bs, &end);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read the refcount blocks of "
                         "'%s'", bs->filename);
        return false;
    }
    end = MAX(end, cs);
    if (s->l1_size) {
        end = MAX(end, ALIGN_UP(s->l1_table_offset + (uint64_t)s->l1_size * 8,
                                cs));
    }
    if (s->reftable_entries) {
        end = MAX(end, ALIGN_UP(s->reftable_offset + s->reftable_entries * 8,
                                cs));
    }
    /* On a block device (an LV, a loop device) the file node's size is
     * the volume, not the image, so the end comes from the metadata. */
    if (!block_node_is_block_device(bs->file)) {
        end = MAX(end, ALIGN_UP(block_node_size(bs->file), cs));
    }
    s->next_alloc = MIN(end, ALIGN_DOWN(QCOW2_MAX_HOST_OFFSET, cs));
    return true;
}

/* (Re)loads header, tables and derived fields; caches are recreated. */
bool qcow2_load_metadata(BlockNode *bs, uint8_t **raw, size_t *raw_len,
                          Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (!load_header(bs, &s->header, raw, raw_len, errp)) {
        return false;
    }
    Qcow2Header *h = &s->header;
    s->cluster_bits = h->cluster_bits;
    s->cluster_size = 1ull << h->cluster_bits;
    s->extended_l2 = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
    s->l2e_shift = s->extended_l2 ? 4 : 3;
    s->l2_bits = h->cluster_bits - s->l2e_shift;
    s->l2_entries = 1ull << s->l2_bits;
    s->subcluster_bits = s->extended_l2 ? h->cluster_bits - 5
                                        : h->cluster_bits;
    s->subcluster_size = 1ull << s->subcluster_bits;
    if (s->subcluster_bits < QCOW2_MIN_CLUSTER_BITS) {
        error_setg(errp, "Unsupported subcluster size: %" PRIu64,
                   s->subcluster_size);
        return false;
    }
    s->refcount_order = h->refcount_order;
    s->refblock_bits = h->cluster_bits + 3 - h->refcount_order;
    s->refblock_entries = 1ull << s->refblock_bits;
    s->l1_size = h->l1_size;
    s->l1_table_offset = h->l1_table_offset;
    s->reftable_offset = h->refcount_table_offset;
    s->reftable_entries = (uint64_t)h->refcount_table_clusters *
                          s->cluster_size / 8;
    s->compression_type = h->compression_type;
    s->compressed_next = 0;

    if (!read_table(bs, s->l1_table_offset, s->l1_size, s->l1_size,
                    &s->l1_table, "L1 table", errp) ||
        !read_table(bs, s->reftable_offset, s->reftable_entries,
                    s->reftable_entries, &s->reftable, "refcount table",
                    errp)) {
        return false;
    }
    return set_allocation_cursor(bs, errp);
}

bool qcow2_create_caches(BlockNode *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    s->l2_cache = qcow2_cache_new(
        qcow2_cache_entries_for(s->l2_cache_bytes, s->cluster_size),
        s->cluster_size);
    s->refblock_cache = qcow2_cache_new(
        qcow2_cache_entries_for(s->refblock_cache_bytes, s->cluster_size),
        s->cluster_size);
    if (!s->l2_cache || !s->refblock_cache) {
        error_setg(errp, "Could not allocate metadata caches");
        return false;
    }
    return true;
}

bool qcow2_reload_metadata(BlockNode *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    CLEANUP_FREE uint8_t *raw = NULL;
    size_t raw_len = 0;
    LOCK_GUARD(&s->lock);
    qcow2_cache_clear(s->l2_cache);
    qcow2_cache_clear(s->refblock_cache);
    s->pending_free_count = 0;
    /* The structures are read again: forget what was free. */
    qcow2_reuse_clear(s);
    free(s->l1_table);
    free(s->reftable);
    s->l1_table = s->reftable = NULL;
    /* The snapshot table is counted by the header: both go together. */
    bool had_snapshots = s->snapshots != NULL;
    qcow2_free_snapshots(s);
    qcow2_header_free(&s->header);
    memset(&s->header, 0, sizeof(s->header));
    uint64_t old_cs = s->cluster_size;
    if (!qcow2_load_metadata(bs, &raw, &raw_len, errp) ||
        (had_snapshots && !qcow2_read_snapshots(bs, errp))) {
        return false;
    }
    if (s->cluster_size != old_cs) {
        error_setg(errp, "qcow2: cluster size of '%s' changed", bs->filename);
        return false;
    }
    int ret = qcow2_meta_rebuild_locked(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not index qcow2 metadata");
        return false;
    }
    return true;
}

/* ---- options ---- */

bool qcow2_parse_options(BlockNode *bs, json_t *opts, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    /* Default: enough L2 cache for the whole disk, capped. */
    uint64_t l2_default = DIV_ROUND_UP(s->header.size, l2_span) *
                          s->cluster_size;
    uint64_t whole_disk = l2_default;
    l2_default = MIN(l2_default, QCOW2_DEFAULT_L2_CACHE_MAX);
    /* The image's own l2-cache-size parameter (docs/image-params.md)
     * replaces the default; open options still win.  Never more than
     * the whole disk needs, so no parameter can make the image too big
     * to open.  A set strata cannot read is ignored here (update and
     * query-image-params say why). */
    if (s->header.strata_params) {
        ImageParams ip;
        Error *perr = NULL;
        if (image_params_decode(s->header.strata_params,
                                s->header.strata_params_len, &ip, &perr)) {
            uint64_t want = image_params_l2_cache_size(&ip);
            if (want) {
                l2_default = MIN(want, whole_disk);
            }
            image_params_free(&ip);
        }
        error_free(perr);
    }
    uint64_t cache_size, l2, rb, entry_size, interval;
    bool lazy, no_unref, pass_req, pass_snap, pass_other;
    bool has_l2 = json_object_get(opts, "l2-cache-size") != NULL;
    bool has_rb = json_object_get(opts, "refcount-cache-size") != NULL;
    bool has_all = json_object_get(opts, "cache-size") != NULL;

    if (!opt_get_size(opts, "cache-size", 0, &cache_size, errp) ||
        !opt_get_size(opts, "l2-cache-size", l2_default, &l2, errp) ||
        !opt_get_size(opts, "refcount-cache-size", 0, &rb, errp) ||
        !opt_get_size(opts, "l2-cache-entry-size", s->cluster_size,
                      &entry_size, errp) ||
        !opt_get_uint64(opts, "cache-clean-interval", 600, &interval, errp) ||
        !opt_get_bool(opts, "lazy-refcounts",
                      s->header.compatible_features &
                          QCOW2_COMPAT_LAZY_REFCOUNTS, &lazy, errp) ||
        !opt_get_bool(opts, "discard-no-unref", false, &no_unref, errp) ||
        !opt_get_bool(opts, "pass-discard-request",
                      bs->discard == BLOCK_DISCARD_UNMAP, &pass_req, errp) ||
        !opt_get_bool(opts, "pass-discard-snapshot", true, &pass_snap, errp) ||
        !opt_get_bool(opts, "pass-discard-other", false, &pass_other, errp)) {
        return false;
    }
    if (has_all && has_l2 && has_rb && l2 + rb != cache_size) {
        error_setg(errp, "l2-cache-size + refcount-cache-size must equal "
                   "cache-size");
        return false;
    }
    if (has_all && !has_l2) {
        /* QEMU splits cache-size between the caches, preferring L2 up to
         * what the disk needs. */
        uint64_t rest = has_rb ? (cache_size > rb ? cache_size - rb : 0)
                               : cache_size;
        l2 = MIN(rest, MAX(l2_default, rest * 3 / 4));
        if (!has_rb) {
            rb = cache_size - l2;
        }
    } else if (has_all && !has_rb) {
        rb = cache_size > l2 ? cache_size - l2 : 0;
    }
    if (!IS_ALIGNED(entry_size, 512) || entry_size < 512 ||
        entry_size > s->cluster_size || (entry_size & (entry_size - 1))) {
        error_setg(errp, "L2 cache entry size must be a power of two between "
                   "512 and the cluster size (%" PRIu64 ")", s->cluster_size);
        return false;
    }
    if (interval > UINT32_MAX) {
        error_setg(errp, "Cache clean interval too big");
        return false;
    }
    if (lazy && s->header.version < 3) {
        error_setg(errp, "Lazy refcounts require a qcow2 image with at least "
                   "qemu 1.1 compatibility level");
        return false;
    }
    const char *overlap = NULL;
    if (!opt_get_str(opts, "overlap-check", NULL, &overlap, errp)) {
        return false;
    }
    if (overlap && strcmp(overlap, "none") && strcmp(overlap, "constant") &&
        strcmp(overlap, "cached") && strcmp(overlap, "all")) {
        error_setg(errp, "Unsupported value '%s' for qcow2 option "
                   "'overlap-check'. Allowed are any of the following: none, "
                   "constant, cached, all", overlap);
        return false;
    }
    static const char *const known[] = {
        "cache-size", "l2-cache-size", "refcount-cache-size",
        "l2-cache-entry-size", "cache-clean-interval", "lazy-refcounts",
        "discard-no-unref", "pass-discard-request", "pass-discard-snapshot",
        "pass-discard-other", "overlap-check",
    };
    for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
        json_object_del(opts, known[i]);
    }
    if (!has_rb && !has_all) {
        rb = MAX(l2 / 4, 4 * s->cluster_size);
    }
    s->l2_cache_bytes = l2;
    s->refblock_cache_bytes = rb;
    s->cache_clean_interval = interval;
    s->lazy_refcounts = lazy;
    s->discard_no_unref = no_unref;
    s->pass_discard_request = pass_req;
    return true;
}
