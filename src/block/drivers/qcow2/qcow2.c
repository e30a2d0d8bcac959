/* strata - the qcow2 driver: open policy and options, close, flush,
 * header updates, corruption handling, and the BlockDriver table.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"

#define QCOW2_DEFAULT_L2_CACHE_MAX (32u << 20)

static int qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
    if (len >= 8) {
        uint32_t magic, version;
        memcpy(&magic, buf, 4);
        memcpy(&version, buf + 4, 4);
        if (be32toh(magic) == QCOW2_MAGIC && be32toh(version) >= 2) {
            return 100;
        }
    }
    return 0;
}

/* ---- corruption ---- */

int qcow2_signal_corruption_locked(BlockNode *bs, bool fatal, int64_t offset,
                                   int64_t size, const char *fmt, ...)
{
    BDRVQcow2State *s = bs->opaque;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    /* Like QEMU: report once, then only fail. */
    if (fatal && atomic_exchange(&s->broken, true)) {
        return -EIO;
    }
    fprintf(stderr, fatal ? "qcow2: Marking image as corrupt: %s; further "
                            "corruption events will be suppressed\n"
                          : "qcow2: Image is corrupt: %s; further non-fatal "
                            "corruption events will be suppressed\n", msg);
    json_t *data = json_pack("{s:s, s:s, s:s, s:b}", "device", "",
                             "node-name", block_node_name(bs), "msg", msg,
                             "fatal", fatal);
    if (data && offset >= 0) {
        json_object_set_new(data, "offset", json_integer(offset));
    }
    if (data && size >= 0) {
        json_object_set_new(data, "size", json_integer(size));
    }
    if (data) {
        block_emit_event("BLOCK_IMAGE_CORRUPTED", data);
    }
    if (fatal && s->writable) {
        s->header.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
        uint64_t be = htobe64(s->header.incompatible_features);
        if (block_write(bs->file, 72, 8, &be, 0) == 0) {
            block_flush(bs->file);
        }
    }
    return -EIO;
}

int qcow2_write_meta_locked(BlockNode *bs, uint64_t offset, uint64_t len,
                            const void *buf, Qcow2MetaType ignore)
{
    BDRVQcow2State *s = bs->opaque;
    if (atomic_load(&s->broken)) {
        return -EIO;
    }
    Qcow2MetaType hit = qcow2_meta_overlap(s, offset, len, ignore);
    if (hit != QCOW2_META_NONE) {
        return qcow2_signal_corruption_locked(
            bs, true, (int64_t)offset, (int64_t)len,
            "Preventing invalid write on metadata (overlaps with %s)",
            qcow2_meta_type_name(hit));
    }
    return block_write(bs->file, offset, len, buf, 0);
}

int qcow2_check_data_write_locked(BlockNode *bs, uint64_t offset, uint64_t len)
{
    BDRVQcow2State *s = bs->opaque;
    if (atomic_load(&s->broken)) {
        return -EIO;
    }
    Qcow2MetaType hit = qcow2_meta_overlap(s, offset, len, QCOW2_META_NONE);
    if (hit != QCOW2_META_NONE) {
        return qcow2_signal_corruption_locked(
            bs, true, (int64_t)offset, (int64_t)len,
            "Preventing invalid write on metadata (overlaps with %s)",
            qcow2_meta_type_name(hit));
    }
    return 0;
}

/* ---- header ---- */

int qcow2_update_header(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    CLEANUP_FREE uint8_t *buf = calloc(1, s->cluster_size);
    if (!buf) {
        return -ENOMEM;
    }
    LOCK_GUARD(&s->lock);
    Error *err = NULL;
    if (!qcow2_header_encode(&s->header, buf, s->cluster_size, &err)) {
        log_error("qcow2: %s: %s", bs->filename, error_get_pretty(err));
        error_free(err);
        return -EINVAL;
    }
    int ret = qcow2_write_meta_locked(bs, 0, s->cluster_size, buf,
                                      QCOW2_META_HEADER);
    return ret < 0 ? ret : block_flush(bs->file);
}

static int write_incompat_locked(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t be = htobe64(s->header.incompatible_features);
    int ret = qcow2_write_meta_locked(bs, 72, 8, &be, QCOW2_META_HEADER);
    return ret < 0 ? ret : block_flush(bs->file);
}

int qcow2_mark_dirty_locked(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (!s->lazy_refcounts || s->dirty_set_by_us ||
        (s->header.incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        return 0;
    }
    int ret = block_flush(bs->file);
    if (ret < 0) {
        return ret;
    }
    s->header.incompatible_features |= QCOW2_INCOMPAT_DIRTY;
    ret = write_incompat_locked(bs);
    if (ret == 0) {
        s->dirty_set_by_us = true;
    }
    return ret;
}

int qcow2_flush_caches(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    int ret = qcow2_cache_flush_locked(bs, s->refblock_cache);
    if (ret == 0) {
        ret = qcow2_cache_flush_locked(bs, s->l2_cache);
    }
    return ret;
}

static int qcow2_flush(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (!s->writable) {
        return 0;
    }
    int ret = qcow2_flush_caches(bs);
    return ret < 0 ? ret : block_flush(bs->file);
}

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
        int ret = block_read(bs->file, offset, entries * 8, t, 0);
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
    int ret = block_read(bs->file, 0, len, first, 0);
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
    ret = len ? block_read(bs->file, 0, len, buf, 0) : 0;
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
            for (size_t i = 0; i + 48 <= elen; i += 48) {
                const uint8_t *e = raw + pos + 8 + i;
                if (e[0] != 0 || e[1] >= 64 || !(mask & (1ull << e[1]))) {
                    continue;
                }
                named |= 1ull << e[1];
                used += snprintf(out + used, out_len - MIN(used, out_len),
                                 "%s%.46s", used ? ", " : "", e + 2);
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

static bool check_open_policy(BlockNode *bs, const uint8_t *raw, size_t len,
                              bool writable, Error **errp)
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
    if ((h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) || h->data_file) {
        error_setg(errp, "qcow2: External data files are not supported "
                   "(image '%s')", bs->filename);
        return false;
    }
    if (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) {
        error_setg(errp, "qcow2: Extended L2 entries are not supported "
                   "(image '%s')", bs->filename);
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
    if (writable && (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)) {
        error_setg(errp, "qcow2: Image is corrupt; cannot be opened "
                   "read/write");
        return false;
    }
    if (writable && h->nb_snapshots) {
        error_setg(errp, "qcow2: Writing to images with internal snapshots is "
                   "not supported ('%s' has %" PRIu32 " snapshots); open it "
                   "read-only or delete the snapshots with qemu-img",
                   bs->filename, h->nb_snapshots);
        return false;
    }
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    if (DIV_ROUND_UP(h->size, l2_span) > h->l1_size) {
        error_setg(errp, "L1 table is too small");
        return false;
    }
    return true;
}

static void free_state(BDRVQcow2State *s)
{
    qcow2_cache_free(s->l2_cache);
    qcow2_cache_free(s->refblock_cache);
    s->l2_cache = s->refblock_cache = NULL;
    free(s->l1_table);
    free(s->reftable);
    s->l1_table = s->reftable = NULL;
    qcow2_meta_clear(s);
    qcow2_header_free(&s->header);
}

/* (Re)loads header, tables and derived fields; caches are recreated. */
static bool load_metadata(BlockNode *bs, uint8_t **raw, size_t *raw_len,
                          Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (!load_header(bs, &s->header, raw, raw_len, errp)) {
        return false;
    }
    Qcow2Header *h = &s->header;
    s->cluster_bits = h->cluster_bits;
    s->cluster_size = 1ull << h->cluster_bits;
    s->l2_bits = h->cluster_bits - 3;
    s->l2_entries = 1ull << s->l2_bits;
    s->refcount_order = h->refcount_order;
    s->refblock_bits = h->cluster_bits + 3 - h->refcount_order;
    s->refblock_entries = 1ull << s->refblock_bits;
    s->l1_size = h->l1_size;
    s->l1_table_offset = h->l1_table_offset;
    s->reftable_offset = h->refcount_table_offset;
    s->reftable_entries = (uint64_t)h->refcount_table_clusters *
                          s->cluster_size / 8;
    s->compression_type = h->compression_type;
    s->next_alloc = ALIGN_UP(block_node_size(bs->file), s->cluster_size);
    s->compressed_next = 0;

    if (!read_table(bs, s->l1_table_offset, s->l1_size, s->l1_size,
                    &s->l1_table, "L1 table", errp) ||
        !read_table(bs, s->reftable_offset, s->reftable_entries,
                    s->reftable_entries, &s->reftable, "refcount table",
                    errp)) {
        return false;
    }
    return true;
}

static bool create_caches(BlockNode *bs, Error **errp)
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
    free(s->l1_table);
    free(s->reftable);
    s->l1_table = s->reftable = NULL;
    qcow2_header_free(&s->header);
    memset(&s->header, 0, sizeof(s->header));
    uint64_t old_cs = s->cluster_size;
    if (!load_metadata(bs, &raw, &raw_len, errp)) {
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

static bool parse_options(BlockNode *bs, json_t *opts, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    /* Default: enough L2 cache for the whole disk, capped. */
    uint64_t l2_default = DIV_ROUND_UP(s->header.size, l2_span) *
                          s->cluster_size;
    l2_default = MIN(l2_default, QCOW2_DEFAULT_L2_CACHE_MAX);
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

/* ---- open / close ---- */

static bool qcow2_open(BlockNode *bs, json_t *opts, int flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->alloc_cond, NULL);

    bs->file = block_open_child(bs, opts, "file", flags, errp);
    if (!bs->file) {
        return false;
    }
    bool writable = !bs->read_only;
    CLEANUP_FREE uint8_t *raw = NULL;
    size_t raw_len = 0;
    if (!load_metadata(bs, &raw, &raw_len, errp) ||
        !check_open_policy(bs, raw, raw_len, writable, errp) ||
        !parse_options(bs, opts, errp) || !create_caches(bs, errp)) {
        goto fail;
    }
    s->writable = writable;
    {
        LOCK_GUARD(&s->lock);
        int ret = qcow2_meta_rebuild_locked(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not index qcow2 metadata");
            goto fail;
        }
    }

    if (writable) {
        uint64_t autoclear = s->header.autoclear_features;
        /* Bitmaps are not maintained: mark them inconsistent, and clear
         * what we do not know, so QEMU does not trust stale data. */
        if (autoclear) {
            s->header.autoclear_features = 0;
            int ret = qcow2_update_header(bs);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not update qcow2 header "
                                 "of '%s'", bs->filename);
                goto fail;
            }
        }
        if ((s->header.incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
            !(flags & BLOCK_O_NO_REPAIR)) {
            BlockCheckResult res;
            memset(&res, 0, sizeof(res));
            int ret = qcow2_check(bs, &res, BLOCK_FIX_ERRORS | BLOCK_FIX_LEAKS);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not repair dirty image "
                                 "'%s'", bs->filename);
                goto fail;
            }
            if (!qcow2_reload_metadata(bs, errp)) {
                goto fail;
            }
            if (s->header.incompatible_features & QCOW2_INCOMPAT_DIRTY) {
                s->header.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
                LOCK_GUARD(&s->lock);
                ret = write_incompat_locked(bs);
                if (ret < 0) {
                    error_setg_errno(errp, -ret, "Could not clear the dirty "
                                     "flag of '%s'", bs->filename);
                    goto fail;
                }
            }
        }
    }

    bs->total_size = s->header.size;
    bs->request_alignment = 1;
    if (s->header.backing_file) {
        bs->backing_file = strdup(s->header.backing_file);
        if (s->header.backing_format) {
            bs->backing_format = strdup(s->header.backing_format);
        }
    }
    return true;

fail:
    free_state(s);
    pthread_cond_destroy(&s->alloc_cond);
    pthread_mutex_destroy(&s->lock);
    return false;
}

static void qcow2_close(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->writable && !atomic_load(&s->broken)) {
        int ret = qcow2_flush(bs);
        if (ret == 0 && s->dirty_set_by_us) {
            LOCK_GUARD(&s->lock);
            s->header.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
            ret = write_incompat_locked(bs);
        }
        if (ret < 0) {
            log_error("qcow2: %s: could not write back metadata on close: %s",
                      bs->filename, strerror(-ret));
        }
    }
    free_state(s);
    pthread_cond_destroy(&s->alloc_cond);
    pthread_mutex_destroy(&s->lock);
}

/* ---- size, backing, info ---- */

static bool qcow2_truncate(BlockNode *bs, uint64_t size, bool exact,
                           PreallocMode prealloc, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (prealloc != PREALLOC_OFF) {
        error_setg(errp, "Unsupported preallocation mode '%s'",
                   prealloc_mode_names[prealloc]);
        return false;
    }
    if (s->header.nb_snapshots) {
        error_setg(errp, "Can't resize an image which has snapshots");
        return false;
    }
    uint64_t old = s->header.size;
    if (size < old) {
        /* Only when nothing is stored beyond the new end. */
        for (uint64_t off = size; off < old;) {
            uint64_t pnum = 0;
            int ret = qcow2_co_block_status(bs, off, old - off, &pnum, NULL,
                                            NULL);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not inspect '%s'",
                                 bs->filename);
                return false;
            }
            if (ret & BLOCK_STATUS_ALLOCATED) {
                error_setg(errp, "qcow2: Cannot shrink '%s': data is stored "
                           "beyond the new size (use a tool that discards "
                           "it first)", bs->filename);
                return false;
            }
            off += pnum;
        }
    }
    LOCK_GUARD(&s->lock);
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    int ret = qcow2_grow_l1_locked(bs, DIV_ROUND_UP(size, l2_span));
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not grow the L1 table of '%s'",
                         bs->filename);
        return false;
    }
    uint64_t be = htobe64(size);
    ret = qcow2_write_meta_locked(bs, 24, 8, &be, QCOW2_META_HEADER);
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not update the size of '%s'",
                         bs->filename);
        return false;
    }
    s->header.size = size;
    bs->total_size = size;
    return true;
}

static bool qcow2_change_backing_file(BlockNode *bs, const char *backing_file,
                                      const char *backing_fmt, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (backing_file && strlen(backing_file) > QCOW2_MAX_BACKING_FILE_SIZE) {
        error_setg(errp, "Backing file name too long");
        return false;
    }
    char *old_file = s->header.backing_file;
    char *old_fmt = s->header.backing_format;
    s->header.backing_file = backing_file ? strdup(backing_file) : NULL;
    s->header.backing_format = backing_file && backing_fmt ? strdup(backing_fmt)
                                                           : NULL;
    int ret = qcow2_update_header(bs);
    if (ret < 0) {
        free(s->header.backing_file);
        free(s->header.backing_format);
        s->header.backing_file = old_file;
        s->header.backing_format = old_fmt;
        error_setg_errno(errp, -ret, "Could not update the backing file of "
                         "'%s'", bs->filename);
        return false;
    }
    free(old_file);
    free(old_fmt);
    free(bs->backing_file);
    free(bs->backing_format);
    bs->backing_file = backing_file ? strdup(backing_file) : NULL;
    bs->backing_format = backing_file && backing_fmt ? strdup(backing_fmt)
                                                     : NULL;
    return true;
}

static json_t *qcow2_get_specific_info(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    const char *ctype = s->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd"
                                                                      : "zlib";
    json_t *data;
    if (s->header.version < 3) {
        data = json_pack("{s:s, s:s, s:i}", "compat", "0.10",
                         "compression-type", ctype, "refcount-bits",
                         1 << s->refcount_order);
    } else {
        data = json_pack(
            "{s:s, s:s, s:b, s:i, s:b, s:b}", "compat", "1.1",
            "compression-type", ctype, "lazy-refcounts",
            (s->header.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0,
            "refcount-bits", 1 << s->refcount_order, "corrupt",
            (s->header.incompatible_features & QCOW2_INCOMPAT_CORRUPT) != 0 ||
                atomic_load(&s->broken),
            "extended-l2",
            (s->header.incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0);
    }
    return data ? json_pack("{s:s, s:o}", "type", "qcow2", "data", data)
                : NULL;
}

static uint32_t qcow2_get_cluster_size(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    return (uint32_t)s->cluster_size;
}

static bool qcow2_is_dirty(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    return (s->header.incompatible_features & QCOW2_INCOMPAT_DIRTY) != 0;
}

const BlockDriver bdrv_qcow2 = {
    .format_name = "qcow2",
    .state_size = sizeof(BDRVQcow2State),
    .is_format = true,
    .supports_backing = true,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .pread = qcow2_co_pread,
    .pwrite = qcow2_co_pwrite,
    .pwrite_zeroes = qcow2_co_pwrite_zeroes,
    .pdiscard = qcow2_co_pdiscard,
    .pwrite_compressed = qcow2_co_pwrite_compressed,
    .flush = qcow2_flush,
    .block_status = qcow2_co_block_status,
    .truncate = qcow2_truncate,
    .create = qcow2_create,
    .get_specific_info = qcow2_get_specific_info,
    .get_cluster_size = qcow2_get_cluster_size,
    .is_dirty = qcow2_is_dirty,
    .check = qcow2_check,
    .change_backing_file = qcow2_change_backing_file,
    .make_empty = qcow2_make_empty,
};
