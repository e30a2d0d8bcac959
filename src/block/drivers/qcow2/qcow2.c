/* SPDX-License-Identifier: BSD-3-Clause */
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
#include "block/drivers/qcow2/qcow2-subcluster.h"
#include "block/image-params.h"
#include "util/cleanup.h"
#include "util/keyval.h"
#include "util/log.h"

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

    /* Like QEMU: an image that cannot be marked (read-only) is only
     * reported, once, and the failing request fails; otherwise report
     * once, mark it, and fail all I/O from then on. */
    fatal = fatal && s->writable;
    if (atomic_exchange(&s->signaled, true) &&
        (!fatal || atomic_load(&s->broken))) {
        return -EIO;
    }
    if (fatal) {
        atomic_store(&s->broken, true);
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
    return block_write(bs->file, offset, len, buf, BLOCK_REQ_METADATA);
}

int qcow2_check_data_write_locked(BlockNode *bs, uint64_t offset, uint64_t len)
{
    BDRVQcow2State *s = bs->opaque;
    if (atomic_load(&s->broken)) {
        return -EIO;
    }
    /* Data in an external data file cannot overwrite metadata. */
    if (qcow2_has_data_file(s)) {
        return 0;
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

#define QCOW2_MAX_PENDING_FREE 65536

int qcow2_defer_free_locked(BlockNode *bs, uint64_t l2e)
{
    BDRVQcow2State *s = bs->opaque;
    if (qcow2_has_data_file(s)) {
        return qcow2_data_file_free_locked(bs, l2e);
    }
    if (s->pending_free_count == s->pending_free_cap) {
        size_t cap = s->pending_free_cap ? s->pending_free_cap * 2 : 256;
        uint64_t *p = realloc(s->pending_free, cap * sizeof(*p));
        if (!p) {
            return -ENOMEM;
        }
        s->pending_free = p;
        s->pending_free_cap = cap;
    }
    s->pending_free[s->pending_free_count++] = l2e;
    if (s->pending_free_count >= QCOW2_MAX_PENDING_FREE) {
        return qcow2_flush_caches_locked(bs);
    }
    return 0;
}

int qcow2_flush_caches_locked(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    /* Refcount increments, then (after a file flush) the L2 tables. */
    int ret = qcow2_cache_flush_locked(bs, s->refblock_cache);
    if (ret == 0) {
        ret = qcow2_cache_flush_locked(bs, s->l2_cache);
    }
    if (ret < 0 || s->pending_free_count == 0) {
        return ret;
    }
    /* Only once no L2 entry on disk points at them do the freed
     * clusters' refcounts drop. */
    ret = block_flush(bs->file);
    size_t n = s->pending_free_count;
    s->pending_free_count = 0;
    for (size_t i = 0; ret == 0 && i < n; i++) {
        ret = qcow2_free_l2e_locked(bs, s->pending_free[i]);
        if (ret == 0) {
            qcow2_reuse_freed_locked(bs, s->pending_free[i]);
        }
    }
    if (ret == 0) {
        ret = qcow2_cache_flush_locked(bs, s->refblock_cache);
    }
    return ret;
}

int qcow2_flush_caches(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    return qcow2_flush_caches_locked(bs);
}

static int qcow2_flush(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (!s->writable) {
        return 0;
    }
    /* Data before the metadata that points at it. */
    int ret = qcow2_flush_data_file(bs);
    if (ret == 0) {
        ret = qcow2_flush_caches(bs);
    }
    return ret < 0 ? ret : block_flush(bs->file);
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
    s->metadata_only = (flags & BLOCK_O_METADATA_ONLY) != 0;
    CLEANUP_FREE uint8_t *raw = NULL;
    size_t raw_len = 0;
    if (!qcow2_load_metadata(bs, &raw, &raw_len, errp) ||
        !qcow2_check_open_policy(bs, raw, raw_len, writable,
                                 (flags & BLOCK_O_NO_REPAIR) != 0, errp) ||
        /* As QEMU: check reads the table itself, and must open an image
         * whose table is broken. */
        (!(flags & BLOCK_O_NO_REPAIR) && !qcow2_read_snapshots(bs, errp)) ||
        !qcow2_open_data_file(bs, opts, flags, errp) ||
        !qcow2_parse_options(bs, opts, errp) ||
        !qcow2_create_caches(bs, errp)) {
        goto fail;
    }
    s->writable = writable;
    s->metadata_prealloc = -1;
    {
        LOCK_GUARD(&s->lock);
        int ret = qcow2_meta_rebuild_locked(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not index qcow2 metadata");
            goto fail;
        }
    }

    if (writable) {
        /* Bitmaps are not maintained: mark them inconsistent, and clear
         * what we do not know, so QEMU does not trust stale data.  A raw
         * data file is kept raw. */
        uint64_t keep = qcow2_has_data_file(s) ? QCOW2_AUTOCLEAR_DATA_RAW : 0;
        uint64_t autoclear = s->header.autoclear_features & ~keep;
        if (autoclear) {
            s->header.autoclear_features &= keep;
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
    qcow2_close_data_file(bs);
    qcow2_free_state(s);
    pthread_cond_destroy(&s->alloc_cond);
    pthread_mutex_destroy(&s->lock);
    return false;
}

/* Writes back one table cache and flushes the file behind it; says so,
 * in QEMU's words, when that fails. */
static int write_back_cache(BlockNode *bs, Qcow2Cache *c, const char *what)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;
    {
        LOCK_GUARD(&s->lock);
        /* The refcount stage also drops the refcounts of clusters freed
         * while their L2 tables were cached (qcow2_flush_caches_locked
         * knows the order that needs). */
        ret = c == s->refblock_cache ? qcow2_flush_caches_locked(bs)
                                     : qcow2_cache_flush_locked(bs, c);
    }
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret < 0) {
        error_report("Failed to flush the %s cache: %s", what, strerror(-ret));
    }
    return ret;
}

/* Writes back the caches and marks the image clean, as on close (QEMU's
 * qcow2_inactivate).  A file with nothing new to flush does not fail
 * here even when it cannot be written any more. */
static void qcow2_write_back(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->writable && !atomic_load(&s->broken)) {
        int ret = qcow2_flush_data_file(bs);
        int r = write_back_cache(bs, s->l2_cache, "L2 table");
        ret = ret < 0 ? ret : r;
        r = write_back_cache(bs, s->refblock_cache, "refcount block");
        ret = ret < 0 ? ret : r;
        /* As QEMU (qcow2_mark_clean on close): once everything is
         * written back the refcounts are exact, whoever set the bit. */
        if (ret == 0 &&
            (s->header.incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
            LOCK_GUARD(&s->lock);
            s->header.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
            ret = write_incompat_locked(bs);
            if (ret < 0) {
                log_error("qcow2: %s: could not mark the image clean: %s",
                          bs->filename, strerror(-ret));
            }
        }
    }
}

static void qcow2_make_read_only(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    qcow2_write_back(bs);
    s->writable = false;
}

static void qcow2_close(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    qcow2_write_back(bs);
    qcow2_close_data_file(bs);
    qcow2_free_state(s);
    pthread_cond_destroy(&s->alloc_cond);
    pthread_mutex_destroy(&s->lock);
}

/* ---- block status ---- */

/* QEMU's test for metadata preallocation: the clusters in use reach
 * past what the file really allocates (by a ninth, or two clusters). */
static int detect_metadata_prealloc_locked(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t real = block_allocated_file_size(bs->file);
    if (real < 0) {
        return 0;
    }
    uint64_t real_clusters = (uint64_t)real / s->cluster_size;
    uint64_t threshold = MAX(real_clusters * 10 / 9, real_clusters + 2);
    uint64_t end = DIV_ROUND_UP(block_node_size(bs->file), s->cluster_size);
    uint64_t count = 0;
    for (uint64_t i = 0; i < end && count < threshold; i++) {
        uint64_t rc;
        if (qcow2_get_refcount_locked(bs, i, &rc) < 0) {
            return 0;
        }
        count += rc != 0;
    }
    return count >= threshold;
}

static int qcow2_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                              uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    BDRVQcow2State *s = bs->opaque;
    /* Judged once per open (as QEMU); after that no lock is taken. */
    int prealloc = __atomic_load_n(&s->metadata_prealloc, __ATOMIC_ACQUIRE);
    if (prealloc < 0) {
        LOCK_GUARD(&s->lock);
        prealloc = s->metadata_prealloc;
        if (prealloc < 0) {
            prealloc = detect_metadata_prealloc_locked(bs);
            __atomic_store_n(&s->metadata_prealloc, prealloc,
                             __ATOMIC_RELEASE);
        }
    }
    uint64_t host = 0;
    int ret = qcow2_co_block_status(bs, offset, bytes, pnum, &host, file);
    if (map) {
        *map = host;
    }
    if (ret < 0 || !prealloc ||
        (ret & (BLOCK_STATUS_DATA | BLOCK_STATUS_ZERO |
                BLOCK_STATUS_OFFSET_VALID)) !=
            (BLOCK_STATUS_DATA | BLOCK_STATUS_OFFSET_VALID)) {
        return ret;
    }
    /* Ask the file: a hole there reads as zeroes (errors ignored, the
     * answer is only a refinement). */
    uint64_t fnum = 0;
    int fret = block_status(bs->file, host, *pnum, &fnum, NULL, NULL);
    if (fret == -EIO && host >= block_node_size(bs->file)) {
        return ret | BLOCK_STATUS_ZERO;
    }
    if (fret >= 0) {
        if ((fret & BLOCK_STATUS_EOF) &&
            (!fnum || (fret & BLOCK_STATUS_ZERO))) {
            ret |= BLOCK_STATUS_ZERO;
        } else {
            *pnum = fnum;
            ret |= fret & BLOCK_STATUS_ZERO;
        }
    }
    return ret;
}

/* ---- size, backing, info ---- */

static bool qcow2_truncate_locked(BlockNode *bs, uint64_t size,
                                  Error **errp);
static bool zero_grown_area(BlockNode *bs, uint64_t old_size, uint64_t size,
                            Error **errp);

static bool truncate_writes(BlockNode *bs, uint64_t size, bool exact,
                            PreallocMode prealloc, Error **errp);

static bool qcow2_truncate(BlockNode *bs, uint64_t size, bool exact,
                           PreallocMode prealloc, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    /* The zeroes a resize writes (past a new end inside a cluster, over
     * the start of a grown area) are part of the size change, also when
     * amend asks for it on an image opened for metadata changes only.
     * No other request runs meanwhile: the node is drained. */
    bool metadata_only = s->metadata_only;
    s->metadata_only = false;
    bool ok = truncate_writes(bs, size, exact, prealloc, errp);
    s->metadata_only = metadata_only;
    return ok;
}

static bool truncate_writes(BlockNode *bs, uint64_t size, bool exact,
                            PreallocMode prealloc, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old_size = s->header.size;
    /* As QEMU: with a data file, preallocating is mapping the new area
     * and sizing the data file with the mode asked for; a raw data file
     * must stay mapped 1:1. */
    PreallocMode data_mode = prealloc == PREALLOC_METADATA ? PREALLOC_OFF
                                                           : prealloc;
    if (qcow2_has_data_file(s) &&
        (prealloc != PREALLOC_OFF || qcow2_data_file_raw(s))) {
        prealloc = PREALLOC_METADATA;
    }
    if (prealloc != PREALLOC_OFF && prealloc != PREALLOC_METADATA &&
        prealloc != PREALLOC_FALLOC && prealloc != PREALLOC_FULL) {
        error_setg(errp, "Unsupported preallocation mode '%s'",
                   prealloc_mode_names[prealloc]);
        return false;
    }
    /* The header's size is in bytes, but QEMU keeps qcow2 sizes in whole
     * sectors (and so does every reader of the image). */
    if (!IS_ALIGNED(size, 512)) {
        error_setg(errp, "The new size must be a multiple of 512");
        return false;
    }
    /* Each snapshot keeps the size it was taken at, but v2 readers need
     * not know that field: for them a resize would change the size of
     * every snapshot too.  (v3 images may shrink too: the L2 tables the
     * snapshots share are copied before they change.) */
    if (s->header.nb_snapshots && s->header.version < 3) {
        error_setg(errp, "Can't resize a v2 image which has snapshots");
        return false;
    }
    if (size < s->header.size) {
        /* As QEMU: the data beyond the new end is discarded (the image
         * tool asks for --shrink before it gets here). */
        int ret = qcow2_shrink_release(bs, size);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not discard the data beyond "
                             "the new end of '%s'", bs->filename);
            return false;
        }
    }
    bool ok;
    {
        LOCK_GUARD(&s->lock);
        ok = qcow2_truncate_locked(bs, size, errp);
    }
    /* As QEMU: when a backing file reaches into the new area, it must
     * not show through; the area becomes zero (sub)clusters. */
    if (ok && prealloc == PREALLOC_METADATA && size > old_size) {
        int ret = qcow2_prealloc_metadata(bs, old_size, size);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not preallocate metadata");
            return false;
        }
    }
    if (ok && s->data_file && s->data_file != bs->file &&
        block_node_size(s->data_file) != size &&
        !block_truncate(s->data_file, size, exact, data_mode, errp)) {
        return false;
    }
    bool backing_reaches = size > old_size && bs->backing &&
                           block_node_size(bs->backing) > old_size;
    if (ok && size > old_size &&
        (prealloc == PREALLOC_FALLOC || prealloc == PREALLOC_FULL)) {
        /* (Without a data file.)  The file reads zeroes over the new
         * clusters: mapped as data (every subcluster), they hide the
         * backing file. */
        return qcow2_prealloc_data(bs, old_size, size, prealloc,
                                   backing_reaches, errp);
    }
    if (ok && backing_reaches && s->header.version >= 3) {
        return zero_grown_area(bs, old_size, size, errp);
    }
    return ok;
}

/* The new area [old_size, size) as QEMU zeroes it: zero (sub)clusters
 * from the first whole subcluster on, zeroes written as data before. */
static bool zero_grown_area(BlockNode *bs, uint64_t old_size, uint64_t size,
                            Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t zero_start = ALIGN_UP(old_size, s->subcluster_size);
    int ret = 0;
    if (size > zero_start) {
        ret = s->extended_l2
              ? qcow2_sc_zeroize(bs, zero_start, size - zero_start, 0)
              : qcow2_zeroize_clusters(bs, zero_start,
                                       ALIGN_UP(size, s->cluster_size), 0);
        if (ret == 0) {
            ret = qcow2_flush_caches(bs);
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to zero out new clusters");
            return false;
        }
    }
    if (zero_start > old_size) {
        uint64_t len = MIN(zero_start, size) - old_size;
        CLEANUP_FREE void *zeroes = calloc(1, len);
        ret = zeroes ? qcow2_co_pwrite(bs, old_size, len, zeroes, 0)
                     : -ENOMEM;
        if (ret == 0) {
            ret = qcow2_flush_caches(bs);
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to zero out the new area");
            return false;
        }
    }
    return true;
}

static bool qcow2_truncate_locked(BlockNode *bs, uint64_t size, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
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

static bool qcow2_get_params_payload(BlockNode *bs, uint8_t **buf,
                                     size_t *len, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    *buf = NULL;
    *len = 0;
    if (!s->header.strata_params) {
        return true;
    }
    *buf = malloc(s->header.strata_params_len ? s->header.strata_params_len
                                              : 1);
    if (!*buf) {
        error_setg(errp, "Out of memory");
        return false;
    }
    memcpy(*buf, s->header.strata_params, s->header.strata_params_len);
    *len = s->header.strata_params_len;
    return true;
}

static bool qcow2_set_params_payload(BlockNode *bs, const uint8_t *buf,
                                     size_t len, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t *copy = NULL;
    if (buf) {
        copy = malloc(len ? len : 1);
        if (!copy) {
            error_setg(errp, "Out of memory");
            return false;
        }
        memcpy(copy, buf, len);
    }
    uint8_t *old;
    uint32_t old_len;
    {
        LOCK_GUARD(&s->lock);
        old = s->header.strata_params;
        old_len = s->header.strata_params_len;
        s->header.strata_params = copy;
        s->header.strata_params_len = (uint32_t)len;
    }
    /* The whole first cluster in one write: the old header or the new. */
    int ret = qcow2_update_header(bs);
    if (ret < 0) {
        LOCK_GUARD(&s->lock);
        s->header.strata_params = old;
        s->header.strata_params_len = old_len;
        free(copy);
        error_setg_errno(errp, -ret, "Could not write the parameters of "
                         "'%s'", bs->filename);
        return false;
    }
    free(old);
    return true;
}

/* What info shows of the parameters: the typed set, or nothing when the
 * image stores none or a set this strata cannot read (update says why). */
static json_t *params_info(BlockNode *bs)
{
    ImageParams ip;
    Error *err = NULL;
    if (!block_get_image_params(bs, &ip, &err)) {
        error_free(err);
        return NULL;
    }
    json_t *j = json_object_size(ip.kv) ? image_params_to_json(&ip) : NULL;
    image_params_free(&ip);
    return j;
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
            "{s:s, s:s, s:b, s:i}", "compat", "1.1",
            "compression-type", ctype, "lazy-refcounts",
            (s->header.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0,
            "refcount-bits", 1 << s->refcount_order);
        /* Where qemu-img puts them: the name only when the header has
         * one, the raw flag for every image with a data file. */
        if (data && s->header.data_file) {
            json_object_set_new(data, "data-file",
                                json_string(s->header.data_file));
        }
        if (data && qcow2_has_data_file(s)) {
            json_object_set_new(data, "data-file-raw",
                                json_boolean(qcow2_data_file_raw(s)));
        }
        if (data) {
            json_object_set_new(
                data, "corrupt",
                json_boolean((s->header.incompatible_features &
                              QCOW2_INCOMPAT_CORRUPT) != 0 ||
                             atomic_load(&s->broken)));
            json_object_set_new(
                data, "extended-l2",
                json_boolean((s->header.incompatible_features &
                              QCOW2_INCOMPAT_EXTL2) != 0));
        }
    }
    json_t *params = data ? params_info(bs) : NULL;
    if (params) {
        /* A member of strata's own: qemu-img has none of this name. */
        json_object_set_new(data, "strata-parameters", params);
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

static uint64_t qcow2_get_image_end(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    return s->next_alloc;
}

const BlockDriver bdrv_qcow2 = {
    .format_name = "qcow2",
    .state_size = sizeof(BDRVQcow2State),
    .is_format = true,
    .has_metadata = true,
    .supports_backing = true,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .make_read_only = qcow2_make_read_only,
    .pread = qcow2_co_pread,
    .pwrite = qcow2_co_pwrite,
    .pwrite_zeroes = qcow2_co_pwrite_zeroes,
    .pdiscard = qcow2_co_pdiscard,
    .pwrite_compressed = qcow2_co_pwrite_compressed,
    .flush = qcow2_flush,
    .block_status = qcow2_block_status,
    .truncate = qcow2_truncate,
    .create = qcow2_create,
    .create_opts = qcow2_create_opts,
    .get_specific_info = qcow2_get_specific_info,
    .bitmaps_copy_size = qcow2_bitmaps_copy_size,
    .get_cluster_size = qcow2_get_cluster_size,
    .get_allocated_file_size = qcow2_get_allocated_file_size,
    .is_dirty = qcow2_is_dirty,
    .check = qcow2_check,
    .change_backing_file = qcow2_change_backing_file,
    .make_empty = qcow2_make_empty,
    .amend_opts = qcow2_amend_opts,
    .amend = qcow2_amend,
    .get_params_payload = qcow2_get_params_payload,
    .set_params_payload = qcow2_set_params_payload,
    .get_image_end = qcow2_get_image_end,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_create = qcow2_snapshot_create,
    .snapshot_goto = qcow2_snapshot_goto,
    .snapshot_delete = qcow2_snapshot_delete,
    .snapshot_load_tmp = qcow2_snapshot_load_tmp,
};
