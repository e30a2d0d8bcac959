/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 resize with preallocation:
 *  - metadata: the clusters of the new area get host clusters and L2
 *    entries (without data written), as QEMU's preallocate_co does, L2
 *    table before its data clusters.  With extended L2 entries the
 *    bitmaps are left alone: the subclusters stay unallocated and read
 *    from below until written.
 *  - falloc and full: as QEMU's qcow2_co_truncate, a new refcount
 *    table (and the refcount blocks the area needs) goes at the end of
 *    the image, then one run of data clusters, from the cluster the old
 *    end falls in to the new end, is added to the file with that mode
 *    (which makes it read as zeroes) and mapped, new L2 tables after
 *    it.  The old last cluster moves into the run with its used part
 *    copied.  So the data lands where qemu-img puts it (only new L2
 *    tables differ: qemu-img fills the old table's hole with them).
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-create-layout.h"
#include "block/drivers/qcow2/qcow2-io.h"
#include "util/cleanup.h"

/* Maps the clusters of [offset, end) with no host cluster, inside one
 * L2 table; *host_end is where the last one mapped ends for end. */
static int prealloc_in_l2_locked(BlockNode *bs, uint64_t offset, uint64_t end,
                                 uint64_t *done, uint64_t *host_end,
                                 bool *fresh)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t l2_index = cluster & (s->l2_entries - 1);
    uint64_t in_cluster = offset & (cs - 1);
    uint64_t want = MIN(DIV_ROUND_UP(in_cluster + (end - offset), cs),
                        s->l2_entries - l2_index);
    void *table;
    int ret = qcow2_get_l2_for_write_locked(bs, cluster >> s->l2_bits,
                                            &table);
    if (ret < 0) {
        return ret;
    }
    uint64_t e = qcow2_l2_get(s, table, l2_index);
    uint64_t host, n = 1;
    *fresh = !(e & QCOW2_L2E_OFFSET_MASK) && !qcow2_data_at_zero(s, e);
    if (!*fresh) {
        /* Already mapped (the old last cluster): kept as it is. */
        host = e & QCOW2_L2E_OFFSET_MASK;
    } else {
        while (n < want &&
               !(qcow2_l2_get(s, table, l2_index + n) & QCOW2_L2E_OFFSET_MASK)) {
            n++;
        }
        bool unused;
        ret = qcow2_alloc_data_locked(bs, cluster, n, &host, &unused);
        if (ret < 0) {
            qcow2_cache_put(s->l2_cache, table);
            return ret;
        }
        for (uint64_t i = 0; i < n; i++) {
            qcow2_l2_set(s, table, l2_index + i,
                         (host + i * cs) | QCOW2_OFLAG_COPIED);
        }
        qcow2_cache_mark_dirty(s->l2_cache, table);
    }
    qcow2_cache_put(s->l2_cache, table);
    *done = MIN(end - offset, n * cs - in_cluster);
    *host_end = host + in_cluster + *done;
    return 0;
}

/* Guest [from, to) as it reads now (the parts of the first and last
 * (sub)cluster that QEMU copies into newly mapped clusters). */
typedef struct CowPart {
    uint64_t from, to;
    uint8_t *buf;
} CowPart;

static int cow_read(BlockNode *bs, CowPart *c, uint64_t from, uint64_t to)
{
    c->from = from;
    c->to = to;
    c->buf = NULL;
    if (to <= from) {
        return 0;
    }
    c->buf = malloc(to - from);
    if (!c->buf) {
        return -ENOMEM;
    }
    return qcow2_co_pread(bs, from, to - from, c->buf, 0);
}

static int cow_write(BlockNode *bs, const CowPart *c, uint64_t host_at_from,
                     uint64_t *file_end)
{
    BDRVQcow2State *s = bs->opaque;
    if (!c->buf) {
        return 0;
    }
    *file_end = MAX(*file_end, host_at_from + (c->to - c->from));
    return block_write(s->data_file, host_at_from, c->to - c->from, c->buf, 0);
}

int qcow2_prealloc_metadata(BlockNode *bs, uint64_t offset, uint64_t end)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t unit = s->subcluster_size;
    uint64_t host_end = 0, first_host = 0;
    bool first_fresh = false, last_fresh = false;
    CowPart head = { 0 }, tail = { 0 };
    /* As QEMU (perform_cow on the new mappings): the uncovered start of
     * the first (sub)cluster and end of the last one are copied into a
     * newly mapped cluster, read before the mapping changes. */
    int ret = cow_read(bs, &head, ALIGN_DOWN(offset, unit), offset);
    if (ret == 0) {
        ret = cow_read(bs, &tail, end, ALIGN_UP(end, unit));
    }
    uint64_t start = offset;
    while (offset < end && ret == 0) {
        uint64_t done;
        bool fresh;
        LOCK_GUARD(&s->lock);
        ret = qcow2_mark_dirty_locked(bs);
        if (ret == 0) {
            ret = prealloc_in_l2_locked(bs, offset, end, &done, &host_end,
                                        &fresh);
        }
        if (ret == 0) {
            if (offset == start) {
                first_fresh = fresh;
                first_host = host_end - done;
            }
            last_fresh = fresh;
            offset += done;
        }
    }
    uint64_t file_end = host_end;
    if (ret == 0 && first_fresh) {
        ret = cow_write(bs, &head, first_host - (head.to - head.from),
                        &file_end);
    }
    if (ret == 0 && last_fresh) {
        ret = cow_write(bs, &tail, host_end, &file_end);
    }
    free(head.buf);
    free(tail.buf);
    if (ret == 0) {
        ret = qcow2_flush_caches(bs);
    }
    /* As QEMU: the file reaches the end of what was mapped and copied,
     * so reads of the new clusters stay inside it. */
    if (ret == 0 && file_end > block_node_size(s->data_file) &&
        !block_truncate(s->data_file, file_end, false, PREALLOC_OFF, NULL)) {
        ret = -EIO;
    }
    return ret;
}

/* Points the guest clusters from first (n of them, inside one L2 table)
 * at host clusters from host.  With alloc_sc every subcluster is marked
 * allocated (the file reads zeroes there, and a backing file must not
 * show through); otherwise bitmaps are kept, but for a compressed first
 * cluster (which has none): the head_len bytes copied from it are marked
 * allocated.  The old clusters are dropped once the table is on disk. */
static int map_run_locked(BlockNode *bs, uint64_t first, uint64_t n,
                          uint64_t host, bool alloc_sc, uint64_t head_len)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l2_index = first & (s->l2_entries - 1);
    void *table;
    int ret = qcow2_get_l2_for_write_locked(bs, first >> s->l2_bits, &table);
    if (ret < 0) {
        return ret;
    }
    CLEANUP_FREE uint64_t *old = calloc(n, sizeof(uint64_t));
    if (!old) {
        qcow2_cache_put(s->l2_cache, table);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < n; i++) {
        old[i] = qcow2_l2_get(s, table, l2_index + i);
        qcow2_l2_set(s, table, l2_index + i,
                     (host + (i << s->cluster_bits)) | QCOW2_OFLAG_COPIED);
        if (s->extended_l2 && alloc_sc) {
            qcow2_l2_bitmap_set(table, l2_index + i,
                                QCOW2_L2_BITMAP_ALL_ALLOC);
        } else if (s->extended_l2 && i == 0 && head_len &&
                   qcow2_l2e_type_ext(old[0]) == QCOW2_CLUSTER_COMPRESSED) {
            unsigned nb_sc = DIV_ROUND_UP(head_len, s->subcluster_size);
            qcow2_l2_bitmap_set(table, l2_index,
                                nb_sc >= 32 ? QCOW2_L2_BITMAP_ALL_ALLOC
                                            : (1ull << nb_sc) - 1);
        }
    }
    qcow2_cache_mark_dirty(s->l2_cache, table);
    qcow2_cache_put(s->l2_cache, table);
    for (uint64_t i = 0; ret == 0 && i < n; i++) {
        Qcow2ClusterType t = s->extended_l2 ? qcow2_l2e_type_ext(old[i])
                                            : qcow2_l2e_type(old[i]);
        if (t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC ||
            t == QCOW2_CLUSTER_COMPRESSED) {
            ret = qcow2_defer_free_locked(bs, old[i]);
        }
    }
    return ret;
}

/* QEMU's qcow2_refcount_area as its preallocating resize calls it: the
 * refcount blocks the area lacks and a new refcount table of just the
 * size needed go at start (the end of the image), all counted, and the
 * old table is freed.  additional clusters after them will be counted
 * by blocks that exist.  *end is where the new structures end: the data
 * run goes there, as in qemu-img's image. */
static int refcount_area_locked(BlockNode *bs, uint64_t start,
                                uint64_t additional, uint64_t *end)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t total = qcow2_refblocks_needed(start / cs + additional, cs,
                                            s->refblock_entries, false);
    /* Never drop a refcount block the old table lists. */
    uint64_t keep = s->reftable_entries;
    while (keep && !(s->reftable[keep - 1] & QCOW2_REFT_OFFSET_MASK)) {
        keep--;
    }
    uint64_t table_size = ALIGN_UP(MAX(total, keep), cs / 8);
    if (table_size * 8 > QCOW2_MAX_REFTABLE_BYTES) {
        return -EFBIG;
    }
    uint64_t table_clusters = table_size * 8 / cs;
    uint64_t area_index = (start / cs) >> s->refblock_bits;
    uint64_t *table = calloc(table_size, sizeof(uint64_t));
    CLEANUP_FREE uint64_t *disk = calloc(table_size, sizeof(uint64_t));
    if (!table || !disk) {
        free(table);
        return -ENOMEM;
    }
    memcpy(table, s->reftable,
           MIN(table_size, s->reftable_entries) * sizeof(uint64_t));
    uint64_t missing = 0;
    for (uint64_t i = area_index; i < total; i++) {
        missing += !(table[i] & QCOW2_REFT_OFFSET_MASK);
    }
    uint64_t table_offset = start + missing * cs;
    uint64_t end_offset = table_offset + table_clusters * cs;

    int ret = 0;
    uint64_t block_offset = start;
    for (uint64_t i = area_index; ret == 0 && i < total; i++) {
        void *block;
        bool fresh = !(table[i] & QCOW2_REFT_OFFSET_MASK);
        if (fresh) {
            ret = qcow2_meta_add(s, block_offset, cs, QCOW2_META_REFBLOCK);
            if (ret == 0) {
                ret = qcow2_cache_get_locked(bs, s->refblock_cache,
                                             block_offset, true, &block);
            }
            table[i] = block_offset;
            block_offset += cs;
        } else {
            ret = qcow2_cache_get_locked(bs, s->refblock_cache,
                                         table[i] & QCOW2_REFT_OFFSET_MASK,
                                         false, &block);
        }
        if (ret < 0) {
            break;
        }
        uint64_t first = (i << s->refblock_bits) * cs;
        if (first < end_offset) {
            uint64_t j = first < start ? (start - first) / cs : 0;
            uint64_t stop = MIN((end_offset - first) / cs,
                                s->refblock_entries);
            for (; j < stop; j++) {
                qcow2_refblock_set(block, j, s->refcount_order, 1);
            }
        }
        if (fresh || first < end_offset) {
            qcow2_cache_mark_dirty(s->refblock_cache, block);
        }
        qcow2_cache_put(s->refblock_cache, block);
    }
    /* The blocks, then the table, then the header that points at it. */
    if (ret == 0) {
        block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS);
        ret = qcow2_refcounts_durable_locked(bs);
    }
    for (uint64_t i = 0; i < table_size; i++) {
        disk[i] = htobe64(table[i]);
    }
    if (ret == 0) {
        ret = qcow2_meta_add(s, table_offset, table_clusters * cs,
                             QCOW2_META_REFTABLE);
    }
    if (ret == 0) {
        block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE);
        ret = qcow2_write_meta_locked(bs, table_offset, table_size * 8, disk,
                                      QCOW2_META_REFTABLE);
    }
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    uint64_t old_offset, old_bytes;
    if (ret == 0) {
        ret = qcow2_switch_reftable_locked(bs, table, table_size,
                                           table_offset, &old_offset,
                                           &old_bytes);
    }
    if (ret < 0) {
        /* The header still names the old table: what was written for
         * the new one is unreferenced (leaked at worst). */
        free(table);
        return ret;
    }
    s->next_alloc = MAX(s->next_alloc, end_offset);
    ret = block_flush(bs->file);
    if (ret < 0) {
        /* The new table is in use; the old one stays allocated. */
        return ret;
    }
    *end = end_offset;
    return qcow2_free_clusters_locked(bs, old_offset, old_bytes);
}

/* Gives l1_index an L2 table if it has none, where QEMU's allocator
 * would put it: in the first free cluster of the image (the old
 * refcount table's, freed just before), else at the end.  *scan is
 * where the search goes on, as QEMU's free cluster index. */
static int add_l2_locked(BlockNode *bs, uint64_t l1_index, uint64_t *scan)
{
    BDRVQcow2State *s = bs->opaque;
    if (l1_index >= s->l1_size ||
        (s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK)) {
        return 0;    /* (the resize grew the L1 table over the area) */
    }
    uint64_t offset = 0;
    for (; *scan < (s->next_alloc >> s->cluster_bits); (*scan)++) {
        uint64_t rc;
        int ret = qcow2_get_refcount_locked(bs, *scan, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc == 0 && qcow2_meta_overlap(s, *scan << s->cluster_bits,
                                          s->cluster_size, QCOW2_META_NONE)
                           == QCOW2_META_NONE) {
            offset = (*scan)++ << s->cluster_bits;
            break;
        }
    }
    int ret = offset ? qcow2_set_refcount_locked(bs, offset >> s->cluster_bits,
                                                 1)
                     : qcow2_alloc_clusters_locked(bs, 1, &offset);
    void *table;
    if (ret == 0) {
        ret = qcow2_install_l2_locked(bs, l1_index, offset, &table);
    }
    if (ret == 0) {
        qcow2_cache_put(s->l2_cache, table);
    }
    return ret;
}

bool qcow2_prealloc_data(BlockNode *bs, uint64_t old_size, uint64_t end,
                         PreallocMode mode, bool alloc_sc, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t start = ALIGN_DOWN(old_size, cs);
    uint64_t n = (ALIGN_UP(end, cs) - start) >> s->cluster_bits;
    CowPart head = { 0 };
    uint64_t host = 0;
    int ret = cow_read(bs, &head, start, old_size);
    if (ret == 0) {
        LOCK_GUARD(&s->lock);
        /* Room for the L2 tables too (one more for an unaligned head or
         * tail), so none of them needs a new refcount block. */
        uint64_t nb_l2 = DIV_ROUND_UP(n, s->l2_entries) + 1;
        uint64_t area_end;
        ret = qcow2_mark_dirty_locked(bs);
        if (ret == 0) {
            ret = qcow2_flush_caches_locked(bs);
        }
        if (ret == 0) {
            ret = refcount_area_locked(bs, s->next_alloc, n + nb_l2,
                                       &area_end);
        }
        if (ret == 0) {
            ret = qcow2_alloc_clusters_locked(bs, n, &host);
        }
    }
    if (ret < 0) {
        free(head.buf);
        error_setg_errno(errp, -ret, "Failed to allocate data clusters");
        return false;
    }
    /* The run is appended, so the file grows over it with the mode asked
     * for; what of it the file already holds (left over past the last
     * cluster in use) is zeroed here. */
    uint64_t run_end = host + n * cs;
    uint64_t file_size = block_node_size(bs->file);
    if (file_size > host) {
        ret = block_write_zeroes(bs->file, host, MIN(file_size, run_end) - host,
                                  0);
    }
    if (ret == 0 && file_size < run_end &&
        !block_truncate(bs->file, run_end, false, mode, errp)) {
        error_prepend(errp, "Failed to resize underlying file: ");
        LOCK_GUARD(&s->lock);
        qcow2_free_new_clusters_locked(bs, host, n);
        free(head.buf);
        return false;
    }
    uint64_t file_end = run_end;
    uint64_t head_len = old_size - start;
    if (ret == 0) {
        ret = cow_write(bs, &head, host, &file_end);
    }
    free(head.buf);
    if (ret < 0) {
        /* Nothing points at the run yet. */
        LOCK_GUARD(&s->lock);
        qcow2_free_new_clusters_locked(bs, host, n);
        error_setg_errno(errp, -ret, "Failed to write the new clusters");
        return false;
    }
    uint64_t cluster = start >> s->cluster_bits;
    uint64_t scan = 0;
    for (uint64_t done = 0; ret == 0 && done < n;) {
        uint64_t chunk = MIN(n - done, s->l2_entries -
                                       ((cluster + done) & (s->l2_entries - 1)));
        LOCK_GUARD(&s->lock);
        ret = add_l2_locked(bs, (cluster + done) >> s->l2_bits, &scan);
        if (ret < 0) {
            break;
        }
        ret = map_run_locked(bs, cluster + done, chunk,
                             host + (done << s->cluster_bits), alloc_sc,
                             done ? 0 : head_len);
        done += chunk;
    }
    if (ret == 0) {
        ret = qcow2_flush_caches(bs);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update L2 tables");
        return false;
    }
    return true;
}
