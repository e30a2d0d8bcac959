/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - writes to qcow2 images with extended L2 entries.
 *
 * What subclusters buy: a write into a cluster that has no host cluster
 * yet allocates one but fills only the subclusters it touches, copying
 * from below (backing file or zeroes) just the parts of its first and
 * last subcluster it does not cover; the other subclusters stay
 * unallocated and keep reading from the backing file.  Writes into a
 * host cluster already ours go in place; when they reach subclusters
 * not yet allocated in it, those are filled the same way and marked.
 * The copy-on-write ranges and bitmaps follow QEMU 7.2 (handle_copied,
 * handle_alloc, calculate_l2_meta), so qemu-img map of an image written
 * by strata matches one written by QEMU.
 *
 * As in qcow2-rw.c: the clusters are registered in flight, the data is
 * written without the lock, and the L2 entries and bitmaps change only
 * once the data is there, so readers never see a half-written part.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "block/drivers/qcow2/qcow2-subcluster.h"
#include "util/cleanup.h"

/* Above this, the copy-on-write parts are written apart from the data
 * instead of being merged with it into one bounce buffer. */
#define SC_MERGE_LIMIT (1u << 20)

static bool in_place(const BDRVQcow2State *s, uint64_t l2e)
{
    return qcow2_cluster_type_ext(s, l2e) == QCOW2_CLUSTER_NORMAL &&
           (l2e & QCOW2_OFLAG_COPIED);
}

/* Guest range [from, to) of guest cluster index first_cluster on,
 * relative to its start: where data and copy-on-write go. */
typedef struct ScWrite {
    uint64_t cluster;      /* first guest cluster */
    uint64_t n;            /* clusters */
    uint64_t host;         /* host offset of the first cluster */
    uint64_t from, to;     /* written range, cluster-relative */
    uint64_t data_from;    /* guest data, cluster-relative */
    uint64_t data_len;
} ScWrite;

static int signal_invalid_locked(BlockNode *bs, uint64_t cluster)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l1_index = cluster >> s->l2_bits;
    return qcow2_signal_corruption_locked(
        bs, true, -1, -1,
        "Invalid cluster entry found (L2 offset: %#" PRIx64 ", L2 index: %#"
        PRIx64 ")", (uint64_t)(s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK),
        cluster & (s->l2_entries - 1));
}

/* Start of the copy-on-write before data at sc of a cluster about to be
 * given a new host cluster (QEMU's calculate_l2_meta, !keep_old). */
static uint64_t cow_start_new(BDRVQcow2State *s, uint64_t l2e, uint64_t bitmap,
                              unsigned sc)
{
    switch (qcow2_cluster_type_ext(s, l2e)) {
    case QCOW2_CLUSTER_COMPRESSED:
        return 0;
    case QCOW2_CLUSTER_NORMAL: {
        /* Shared host cluster: copy from its first allocated part. */
        uint32_t alloc = (uint32_t)bitmap;
        unsigned first = alloc ? (unsigned)__builtin_ctz(alloc) : 32;
        return (uint64_t)MIN(sc, first) << s->subcluster_bits;
    }
    default:
        return (uint64_t)sc << s->subcluster_bits;
    }
}

/* End of the copy-on-write after data ending at end (cluster-relative,
 * inside subcluster sc) in the last cluster. */
static uint64_t cow_end_new(BDRVQcow2State *s, uint64_t l2e, uint64_t bitmap,
                            unsigned sc, uint64_t end)
{
    switch (qcow2_cluster_type_ext(s, l2e)) {
    case QCOW2_CLUSTER_COMPRESSED:
        return ALIGN_UP(end, s->cluster_size);
    case QCOW2_CLUSTER_NORMAL: {
        uint32_t alloc = (uint32_t)bitmap;
        unsigned last_free = alloc ? (unsigned)__builtin_clz(alloc) : 32;
        unsigned skip = MIN(QCOW2_EXTL2_SUBCLUSTERS - sc - 1, last_free);
        return ALIGN_UP(end, s->cluster_size) -
               ((uint64_t)skip << s->subcluster_bits);
    }
    default:
        return ALIGN_UP(end, s->subcluster_size);
    }
}

/* Writes w: the copy-on-write parts read as the guest sees them now
 * (the clusters are in flight: nobody changes them meanwhile). */
static int write_with_cow(BlockNode *bs, const ScWrite *w, const uint8_t *data,
                          int flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t base = w->cluster << s->cluster_bits; /* guest */
    uint64_t head = w->data_from - w->from;
    uint64_t tail = w->to - (w->data_from + w->data_len);
    uint64_t total = w->to - w->from;
    int ret;

    if (!head && !tail) {
        return block_write(s->data_file, w->host + w->from, total, data, flags);
    }
    /* As QEMU: when the parts to copy read as zeroes, the storage
     * zeroes the whole range cheaply and only the data is written. */
    if (qcow2_sc_reads_zero(bs, base + w->from, head, true) &&
        qcow2_sc_reads_zero(bs, base + w->data_from + w->data_len, tail,
                            true) &&
        block_write_zeroes(s->data_file, w->host + w->from, total,
                           BLOCK_REQ_NO_FALLBACK) == 0) {
        return block_write(s->data_file, w->host + w->data_from, w->data_len,
                           data, flags);
    }
    if (total <= SC_MERGE_LIMIT) {
        uint8_t *bounce = qcow2_scratch_get(QCOW2_SCRATCH_BOUNCE, total);
        if (!bounce) {
            return -ENOMEM;
        }
        ret = head ? qcow2_sc_pread(bs, base + w->from, head, bounce) : 0;
        if (ret == 0 && tail) {
            ret = qcow2_sc_pread(bs, base + w->data_from + w->data_len, tail,
                                 bounce + head + w->data_len);
        }
        if (ret == 0) {
            memcpy(bounce + head, data, w->data_len);
            ret = block_write(s->data_file, w->host + w->from, total, bounce,
                              flags);
        }
        qcow2_scratch_put(QCOW2_SCRATCH_BOUNCE, bounce);
        return ret;
    }
    uint64_t part = MAX(head, tail);
    uint8_t *bounce = qcow2_scratch_get(QCOW2_SCRATCH_BOUNCE, part);
    if (!bounce) {
        return -ENOMEM;
    }
    ret = 0;
    if (head) {
        ret = qcow2_sc_pread(bs, base + w->from, head, bounce);
        if (ret == 0) {
            ret = block_write(s->data_file, w->host + w->from, head, bounce, 0);
        }
    }
    if (ret == 0 && tail) {
        uint64_t at = w->data_from + w->data_len;
        ret = qcow2_sc_pread(bs, base + at, tail, bounce);
        if (ret == 0) {
            ret = block_write(s->data_file, w->host + at, tail, bounce, 0);
        }
    }
    if (ret == 0) {
        ret = block_write(s->data_file, w->host + w->data_from, w->data_len, data,
                          flags);
    }
    qcow2_scratch_put(QCOW2_SCRATCH_BOUNCE, bounce);
    return ret;
}

/* Marks [w->from, w->to) allocated (and not zero) in the bitmaps of w's
 * clusters; with fresh, points their entries at w->host first and
 * queues the references of the old entries to be dropped. */
static int link_l2_locked(BlockNode *bs, const ScWrite *w, bool fresh)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t l1_index = w->cluster >> s->l2_bits;
    uint64_t l2_index = w->cluster & (s->l2_entries - 1);
    void *table;
    int ret = qcow2_get_l2_for_write_locked(bs, l1_index, &table);
    if (ret < 0) {
        return ret;
    }
    uint64_t old_small[16];
    CLEANUP_FREE uint64_t *old_big = NULL;
    uint64_t *old = old_small;
    if (fresh && w->n > ARRAY_SIZE(old_small)) {
        old = old_big = calloc(w->n, sizeof(uint64_t));
        if (!old) {
            qcow2_cache_put(s->l2_cache, table);
            return -ENOMEM;
        }
    }
    for (uint64_t i = 0; i < w->n; i++) {
        uint64_t lo = MAX(w->from, i * cs) - i * cs;
        uint64_t hi = MIN(w->to, (i + 1) * cs) - i * cs;
        unsigned first = (unsigned)(lo >> s->subcluster_bits);
        unsigned last = (unsigned)((hi - 1) >> s->subcluster_bits);
        uint64_t bitmap = qcow2_l2_bitmap_get(table, l2_index + i);
        bitmap |= QCOW2_SC_ALLOC_RANGE(first, last + 1);
        bitmap &= ~QCOW2_SC_ZERO_RANGE(first, last + 1);
        if (fresh) {
            old[i] = qcow2_l2_get(s, table, l2_index + i);
            qcow2_l2_set(s, table, l2_index + i,
                         (w->host + i * cs) | QCOW2_OFLAG_COPIED);
        }
        qcow2_l2_bitmap_set(table, l2_index + i, bitmap);
    }
    qcow2_cache_mark_dirty(s->l2_cache, table);
    qcow2_cache_put(s->l2_cache, table);
    for (uint64_t i = 0; fresh && ret == 0 && i < w->n; i++) {
        if (qcow2_cluster_type_ext(s, old[i]) != QCOW2_CLUSTER_UNALLOCATED) {
            ret = qcow2_defer_free_locked(bs, old[i]);
        }
    }
    return ret;
}

/* In-place write into clusters whose host clusters are ours: n clusters
 * from table index l2_index, contiguous on the host from host. */
static int64_t write_in_place(BlockNode *bs, void *table, uint64_t l2_index,
                              uint64_t offset, uint64_t cur,
                              const uint8_t *buf, int flags,
                              bool *meta_changed)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t in_cluster = offset & (cs - 1);
    uint64_t end = in_cluster + cur; /* relative to the first cluster */
    uint64_t n = DIV_ROUND_UP(end, cs);
    uint64_t host = qcow2_l2_get(s, table, l2_index) & QCOW2_L2E_OFFSET_MASK;
    bool all_normal = true;

    for (uint64_t i = 0; i < n; i++) {
        uint64_t b = qcow2_l2_bitmap_get(table, l2_index + i);
        if ((b >> 32) & b) {
            qcow2_cache_put(s->l2_cache, table);
            int ret = signal_invalid_locked(bs, cluster + i);
            pthread_mutex_unlock(&s->lock);
            return ret;
        }
        uint64_t lo = MAX(in_cluster, i * cs) - i * cs;
        uint64_t hi = MIN(end, (i + 1) * cs) - i * cs;
        unsigned first = (unsigned)(lo >> s->subcluster_bits);
        unsigned last = (unsigned)((hi - 1) >> s->subcluster_bits);
        uint64_t want = QCOW2_SC_ALLOC_RANGE(first, last + 1);
        if ((b & want) != want) {
            all_normal = false;
        }
    }

    if (all_normal) {
        /* The common case once a cluster is written: no metadata. */
        qcow2_cache_put(s->l2_cache, table);
        int ret = qcow2_check_data_write_locked(bs, host + in_cluster, cur);
        pthread_mutex_unlock(&s->lock);
        if (ret == 0) {
            ret = block_write(s->data_file, host + in_cluster, cur, buf,
                              flags & BLOCK_REQ_FUA);
        }
        return ret < 0 ? ret : (int64_t)cur;
    }

    /* Parts of the first and last subcluster that are zero or not yet
     * allocated in the cluster are filled from what they read as. */
    uint64_t e0 = qcow2_l2_get(s, table, l2_index);
    uint64_t b0 = qcow2_l2_bitmap_get(table, l2_index);
    unsigned sc0 = (unsigned)(in_cluster >> s->subcluster_bits);
    uint64_t el = qcow2_l2_get(s, table, l2_index + n - 1);
    uint64_t bl = qcow2_l2_bitmap_get(table, l2_index + n - 1);
    uint64_t end_in_last = end - (n - 1) * cs;
    unsigned scl = (unsigned)((end_in_last - 1) >> s->subcluster_bits);
    qcow2_cache_put(s->l2_cache, table);

    ScWrite w = {
        .cluster = cluster, .n = n, .host = host,
        .data_from = in_cluster, .data_len = cur,
    };
    w.from = qcow2_subcluster_type(s, e0, b0, sc0) == QCOW2_SC_NORMAL
             ? in_cluster
             : ALIGN_DOWN(in_cluster, s->subcluster_size);
    w.to = qcow2_subcluster_type(s, el, bl, scl) == QCOW2_SC_NORMAL
           ? end
           : (n - 1) * cs + ALIGN_UP(end_in_last, s->subcluster_size);

    Qcow2InflightAlloc slot;
    qcow2_inflight_add_locked(s, cluster, n, &slot);
    int ret = qcow2_mark_dirty_locked(bs);
    if (ret == 0) {
        ret = qcow2_check_data_write_locked(bs, host + w.from, w.to - w.from);
    }
    pthread_mutex_unlock(&s->lock);
    if (ret == 0) {
        ret = write_with_cow(bs, &w, buf, flags & BLOCK_REQ_FUA);
    }
    pthread_mutex_lock(&s->lock);
    if (ret == 0) {
        ret = link_l2_locked(bs, &w, false);
        *meta_changed = true;
    }
    qcow2_inflight_remove_locked(s, &slot);
    pthread_mutex_unlock(&s->lock);
    return ret < 0 ? ret : (int64_t)cur;
}

int64_t qcow2_sc_write_piece(BlockNode *bs, uint64_t offset, uint64_t bytes,
                           const uint8_t *buf, int flags, bool *meta_changed)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t in_cluster = offset & (cs - 1);
    uint64_t l1_index = cluster >> s->l2_bits;
    uint64_t l2_index = cluster & (s->l2_entries - 1);
    uint64_t want = MIN(DIV_ROUND_UP(in_cluster + bytes, cs),
                        s->l2_entries - l2_index);
    int ret;

    pthread_mutex_lock(&s->lock);
    qcow2_inflight_wait_locked(s, cluster, want);
    void *table;
    ret = qcow2_get_l2_table_locked(bs, l1_index, &table);
    if (ret < 0) {
        pthread_mutex_unlock(&s->lock);
        return ret;
    }

    uint64_t e0 = table ? qcow2_l2_get(s, table, l2_index) : 0;
    uint64_t k = 1; /* clusters of the same kind (in place or not) */
    if (table && in_place(s, e0)) {
        uint64_t host = e0 & QCOW2_L2E_OFFSET_MASK;
        if (host & (cs - 1)) {
            qcow2_cache_put(s->l2_cache, table);
            ret = qcow2_signal_corruption_locked(
                bs, true, -1, -1,
                "Cluster allocation offset %#" PRIx64 " unaligned (L2 "
                "offset: %#" PRIx64 ", L2 index: %#" PRIx64 ")", host,
                (uint64_t)(s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK),
                l2_index);
            pthread_mutex_unlock(&s->lock);
            return ret;
        }
        while (k < want) {
            uint64_t e = qcow2_l2_get(s, table, l2_index + k);
            if (!in_place(s, e) ||
                (e & QCOW2_L2E_OFFSET_MASK) != host + k * cs) {
                break;
            }
            k++;
        }
        uint64_t cur = MIN(bytes, k * cs - in_cluster);
        /* Unlocks. */
        return write_in_place(bs, table, l2_index, offset, cur, buf, flags,
                              meta_changed);
    }

    /* Clusters needing a new host cluster; their bitmaps must be sane. */
    for (k = 0; k < want; k++) {
        uint64_t e = table ? qcow2_l2_get(s, table, l2_index + k) : 0;
        uint64_t b = table ? qcow2_l2_bitmap_get(table, l2_index + k) : 0;
        if (k > 0 && in_place(s, e)) {
            break;
        }
        if (qcow2_subcluster_type(s, e, b, 0) == QCOW2_SC_INVALID) {
            if (table) {
                qcow2_cache_put(s->l2_cache, table);
            }
            ret = signal_invalid_locked(bs, cluster + k);
            pthread_mutex_unlock(&s->lock);
            return ret;
        }
    }
    uint64_t cur = MIN(bytes, k * cs - in_cluster);
    uint64_t end = in_cluster + cur;
    uint64_t n = DIV_ROUND_UP(end, cs);
    uint64_t b0 = table ? qcow2_l2_bitmap_get(table, l2_index) : 0;
    uint64_t el = table ? qcow2_l2_get(s, table, l2_index + n - 1) : 0;
    uint64_t bl = table ? qcow2_l2_bitmap_get(table, l2_index + n - 1) : 0;
    if (table) {
        qcow2_cache_put(s->l2_cache, table);
    }
    uint64_t end_in_last = end - (n - 1) * cs;
    ScWrite w = {
        .cluster = cluster, .n = n,
        .data_from = in_cluster, .data_len = cur,
        .from = cow_start_new(s, e0, b0,
                              (unsigned)(in_cluster >> s->subcluster_bits)),
        .to = (n - 1) * cs +
              cow_end_new(s, el, bl,
                          (unsigned)((end_in_last - 1) >> s->subcluster_bits),
                          end_in_last),
    };

    Qcow2InflightAlloc slot;
    bool fresh = false, linked = false;
    qcow2_inflight_add_locked(s, cluster, n, &slot);
    ret = qcow2_mark_dirty_locked(bs);
    if (ret == 0 && !table) {
        /* As QEMU: a missing L2 table is allocated before the data, so
         * both land where qemu-io would put them. */
        ret = qcow2_get_l2_for_write_locked(bs, l1_index, &table);
        if (ret == 0) {
            qcow2_cache_put(s->l2_cache, table);
        }
    }
    if (ret == 0) {
        ret = qcow2_alloc_data_locked(bs, cluster, n, &w.host, &fresh);
        if (ret == 0) {
            ret = qcow2_check_data_write_locked(bs, w.host + w.from,
                                                w.to - w.from);
            fresh = fresh && ret == 0;
        }
    }
    pthread_mutex_unlock(&s->lock);

    if (ret == 0) {
        ret = write_with_cow(bs, &w, buf, flags & BLOCK_REQ_FUA);
    }

    pthread_mutex_lock(&s->lock);
    if (ret == 0) {
        ret = link_l2_locked(bs, &w, true);
        linked = ret == 0;
        *meta_changed = true;
    }
    if (ret < 0 && fresh && !linked) {
        qcow2_free_new_clusters_locked(bs, w.host, n);
    }
    qcow2_inflight_remove_locked(s, &slot);
    pthread_mutex_unlock(&s->lock);
    return ret < 0 ? ret : (int64_t)cur;
}
