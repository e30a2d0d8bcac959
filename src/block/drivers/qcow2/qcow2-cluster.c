/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 guest-to-host mapping: L2 entry decoding, L1/L2
 * lookup through the L2 cache, L2 table and L1 table allocation, and
 * block status.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "block/drivers/qcow2/qcow2-subcluster.h"
#include "util/cleanup.h"

/* The descriptor splits bits 0..61: the low 62 - (cluster_bits - 8) bits
 * are the byte offset, the rest the number of extra 512-byte sectors. */
void qcow2_compressed_decode(uint64_t l2e, unsigned cluster_bits,
                             Qcow2CompressedDesc *d)
{
    unsigned shift = 62 - (cluster_bits - 8);
    uint64_t csize_mask = (1ull << (cluster_bits - 8)) - 1;
    d->host_offset = l2e & ((1ull << shift) - 1);
    d->nb_sectors = ((l2e >> shift) & csize_mask) + 1;
    d->size = d->nb_sectors * 512 - (d->host_offset & 511);
}

uint64_t qcow2_compressed_encode(uint64_t host_offset, uint64_t size,
                                 unsigned cluster_bits)
{
    unsigned shift = 62 - (cluster_bits - 8);
    uint64_t csize_mask = (1ull << (cluster_bits - 8)) - 1;
    if (size == 0 || host_offset >= (1ull << shift)) {
        return 0;
    }
    uint64_t extra = (host_offset + size - 1) / 512 - host_offset / 512;
    if (extra > csize_mask) {
        return 0;
    }
    return QCOW2_OFLAG_COMPRESSED | (extra << shift) | host_offset;
}

int qcow2_get_l2_table_locked(BlockNode *bs, uint64_t l1_index, void **table)
{
    BDRVQcow2State *s = bs->opaque;
    *table = NULL;
    if (l1_index >= s->l1_size) {
        return 0;
    }
    uint64_t l2_offset = s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK;
    if (!l2_offset) {
        return 0;
    }
    if (l2_offset & (s->cluster_size - 1)) {
        return qcow2_signal_corruption_locked(
            bs, true, -1, -1,
            "L2 table offset %#" PRIx64 " unaligned (L1 index: %#" PRIx64 ")",
            l2_offset, l1_index);
    }
    *table = qcow2_cache_lookup_locked(s->l2_cache, l2_offset);
    if (*table) {
        return 0;
    }
    /* Every table this driver allocates is written at once, so a
     * table past the end of the file comes from a corrupt image. */
    if (l2_offset >= block_node_size(bs->file)) {
        return qcow2_signal_corruption_locked(
            bs, true, -1, -1,
            "L2 table offset %#" PRIx64 " is beyond the end of the image "
            "(L1 index: %#" PRIx64 ")", l2_offset, l1_index);
    }
    return qcow2_cache_get_locked(bs, s->l2_cache, l2_offset, false, table);
}

static int check_l2e_locked(BlockNode *bs, uint64_t l2e, uint64_t l1_index,
                            uint64_t l2_index)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2ClusterType type = qcow2_cluster_type(s, l2e);
    uint64_t l2_offset = s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK;
    if ((type == QCOW2_CLUSTER_ZERO_PLAIN || type == QCOW2_CLUSTER_ZERO_ALLOC)
        && s->header.version < 3) {
        return qcow2_signal_corruption_locked(
            bs, true, -1, -1,
            "Zero cluster entry found in pre-v3 image (L2 offset: %#" PRIx64
            ", L2 index: %#" PRIx64 ")", l2_offset, l2_index);
    }
    if (type == QCOW2_CLUSTER_NORMAL || type == QCOW2_CLUSTER_ZERO_ALLOC) {
        uint64_t host = l2e & QCOW2_L2E_OFFSET_MASK;
        if (host & (s->cluster_size - 1)) {
            return qcow2_signal_corruption_locked(
                bs, true, -1, -1,
                "Cluster allocation offset %#" PRIx64 " unaligned (L2 offset: %#"
                PRIx64 ", L2 index: %#" PRIx64 ")", host, l2_offset, l2_index);
        }
    }
    uint64_t guest = ((l1_index << s->l2_bits) + l2_index) << s->cluster_bits;
    return qcow2_check_data_file_entry_locked(
        bs, l2e, type == QCOW2_CLUSTER_NORMAL ||
                     type == QCOW2_CLUSTER_ZERO_ALLOC,
        guest, l2_offset, l2_index);
}

int qcow2_get_cluster_locked(BlockNode *bs, uint64_t offset,
                             uint64_t max_clusters, uint64_t *l2e,
                             uint64_t *nb_clusters)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l1_index = offset >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (offset >> s->cluster_bits) & (s->l2_entries - 1);
    max_clusters = MIN(max_clusters, s->l2_entries - l2_index);
    if (max_clusters == 0) {
        max_clusters = 1;
    }

    void *table;
    int ret = qcow2_get_l2_table_locked(bs, l1_index, &table);
    if (ret < 0) {
        return ret;
    }
    if (!table) {
        *l2e = 0;
        *nb_clusters = max_clusters;
        return 0;
    }
    uint64_t first = qcow2_l2_get(s, table, l2_index);
    ret = check_l2e_locked(bs, first, l1_index, l2_index);
    if (ret < 0) {
        qcow2_cache_put(s->l2_cache, table);
        return ret;
    }
    Qcow2ClusterType type = qcow2_cluster_type(s, first);
    uint64_t n = 1;
    if (type != QCOW2_CLUSTER_COMPRESSED) {
        bool has_host = type == QCOW2_CLUSTER_NORMAL ||
                        type == QCOW2_CLUSTER_ZERO_ALLOC;
        uint64_t flags_mask = QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO;
        for (; n < max_clusters; n++) {
            uint64_t e = qcow2_l2_get(s, table, l2_index + n);
            if (qcow2_cluster_type(s, e) != type) {
                break;
            }
            if (has_host &&
                ((e & QCOW2_L2E_OFFSET_MASK) !=
                     (first & QCOW2_L2E_OFFSET_MASK) + n * s->cluster_size ||
                 (e & flags_mask) != (first & flags_mask))) {
                break;
            }
        }
    }
    qcow2_cache_put(s->l2_cache, table);
    *l2e = first;
    *nb_clusters = n;
    return 0;
}

int qcow2_grow_l1_locked(BlockNode *bs, uint64_t min_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    if (min_size <= s->l1_size) {
        return 0;
    }
    if (min_size > QCOW2_MAX_L1_BYTES / 8) {
        return -EFBIG;
    }
    uint64_t new_size = MAX(min_size, (uint64_t)s->l1_size * 3 / 2);
    new_size = MIN(new_size, QCOW2_MAX_L1_BYTES / 8);
    uint64_t bytes = ALIGN_UP(new_size * 8, cs);
    uint64_t *table = calloc(bytes / 8, 8);
    uint64_t *disk = calloc(bytes / 8, 8);
    if (!table || !disk) {
        free(table);
        free(disk);
        return -ENOMEM;
    }
    memcpy(table, s->l1_table, (uint64_t)s->l1_size * 8);
    for (uint64_t i = 0; i < new_size; i++) {
        disk[i] = htobe64(table[i]);
    }
    uint64_t new_offset;
    block_debug_event(bs->file, BLKDBG_L1_GROW_ALLOC_TABLE);
    int ret = qcow2_alloc_clusters_locked(bs, bytes / cs, &new_offset);
    if (ret == 0) {
        block_debug_event(bs->file, BLKDBG_L1_GROW_WRITE_TABLE);
        ret = qcow2_write_meta_locked(bs, new_offset, bytes, disk,
                                      QCOW2_META_NONE);
    }
    free(disk);
    /* The new table and its refcounts must be on disk before the header
     * points at it. */
    if (ret == 0) {
        ret = qcow2_refcounts_durable_locked(bs);
    }
    if (ret < 0) {
        free(table);
        return ret;
    }
    struct {
        uint32_t l1_size;
        uint64_t l1_offset;
    } __attribute__((packed)) hdr = {
        htobe32((uint32_t)new_size), htobe64(new_offset)
    };
    block_debug_event(bs->file, BLKDBG_L1_GROW_ACTIVATE_TABLE);
    ret = qcow2_write_meta_locked(bs, 36, sizeof(hdr), &hdr,
                                  QCOW2_META_HEADER);
    if (ret < 0) {
        free(table);
        return ret;
    }
    uint64_t old_offset = s->l1_table_offset;
    uint64_t old_bytes = ALIGN_UP((uint64_t)s->l1_size * 8, cs);
    free(s->l1_table);
    s->l1_table = table;
    s->l1_size = (uint32_t)new_size;
    s->l1_table_offset = new_offset;
    s->header.l1_size = (uint32_t)new_size;
    s->header.l1_table_offset = new_offset;
    if (old_offset) {
        qcow2_meta_remove(s, old_offset, old_bytes);
    }
    ret = qcow2_meta_add(s, new_offset, bytes, QCOW2_META_L1);
    if (ret == 0 && old_offset && old_bytes) {
        ret = qcow2_free_clusters_locked(bs, old_offset, old_bytes);
    }
    return ret;
}

static int write_l1_entry_locked(BlockNode *bs, uint64_t l1_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t be = htobe64(s->l1_table[l1_index]);
    block_debug_event(bs->file, BLKDBG_L1_UPDATE);
    return qcow2_write_meta_locked(bs, s->l1_table_offset + l1_index * 8, 8,
                                   &be, QCOW2_META_L1);
}

static int install_l2_locked(BlockNode *bs, uint64_t l1_index,
                             uint64_t new_offset, const void *contents,
                             void **table);

/* Copy-on-write of an L2 table that snapshots share (refcount above 1),
 * as QEMU's l2_allocate does: the copy and its refcount reach the disk,
 * then the active L1 entry points at it, then the old table loses the
 * active table's reference.  The entries are copied as they are: the
 * data clusters stay shared (their refcounts already count both tables,
 * and their OFLAG_COPIED is clear), so writes to them copy them too. */
static int copy_shared_l2_locked(BlockNode *bs, uint64_t l1_index,
                                 void **table)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old_offset = s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK;
    void *old;
    block_debug_event(bs->file, BLKDBG_L2_ALLOC_COW_READ);
    int ret = qcow2_get_l2_table_locked(bs, l1_index, &old);
    if (ret < 0) {
        return ret;
    }
    uint64_t new_offset;
    ret = qcow2_alloc_clusters_locked(bs, 1, &new_offset);
    if (ret == 0) {
        ret = install_l2_locked(bs, l1_index, new_offset, old, table);
    }
    qcow2_cache_put(s->l2_cache, old);
    if (ret < 0) {
        return ret;
    }
    /* The old table counts one reference less only once no L1 entry on
     * disk points at it from the active table. */
    ret = block_flush(bs->file);
    if (ret == 0) {
        ret = qcow2_free_clusters_locked(bs, old_offset, s->cluster_size);
    }
    if (ret < 0) {
        qcow2_cache_put(s->l2_cache, *table);
        *table = NULL;
    }
    return ret;
}

int qcow2_get_l2_for_write_locked(BlockNode *bs, uint64_t l1_index,
                                  void **table)
{
    BDRVQcow2State *s = bs->opaque;
    *table = NULL;
    if (l1_index >= s->l1_size) {
        int ret = qcow2_grow_l1_locked(bs, l1_index + 1);
        if (ret < 0) {
            return ret;
        }
    }
    uint64_t l1e = s->l1_table[l1_index];
    uint64_t l2_offset = l1e & QCOW2_L1E_OFFSET_MASK;
    if (l2_offset) {
        if (!(l1e & QCOW2_OFLAG_COPIED)) {
            uint64_t rc;
            int ret = qcow2_get_refcount_locked(bs, l2_offset >> s->cluster_bits,
                                                &rc);
            if (ret < 0) {
                return ret;
            }
            if (rc != 1) {
                /* Shared with a snapshot: the active L1 table gets a
                 * copy of its own. */
                return copy_shared_l2_locked(bs, l1_index, table);
            }
            s->l1_table[l1_index] = l1e | QCOW2_OFLAG_COPIED;
            ret = write_l1_entry_locked(bs, l1_index);
            if (ret < 0) {
                return ret;
            }
        }
        return qcow2_get_l2_table_locked(bs, l1_index, table);
    }

    uint64_t new_offset;
    int ret = qcow2_alloc_clusters_locked(bs, 1, &new_offset);
    if (ret < 0) {
        return ret;
    }
    return qcow2_install_l2_locked(bs, l1_index, new_offset, table);
}

int qcow2_install_l2_locked(BlockNode *bs, uint64_t l1_index,
                            uint64_t new_offset, void **table)
{
    return install_l2_locked(bs, l1_index, new_offset, NULL, table);
}

/* Puts a new L2 table (zeroed, or a copy of contents) at new_offset, a
 * cluster just allocated, and points L1 entry l1_index at it. */
static int install_l2_locked(BlockNode *bs, uint64_t l1_index,
                             uint64_t new_offset, const void *contents,
                             void **table)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_meta_add(s, new_offset, s->cluster_size, QCOW2_META_L2);
    if (ret < 0) {
        qcow2_free_new_clusters_locked(bs, new_offset, 1);
        return ret;
    }
    void *t;
    ret = qcow2_cache_get_locked(bs, s->l2_cache, new_offset, true, &t);
    if (ret < 0) {
        qcow2_meta_remove(s, new_offset, s->cluster_size);
        qcow2_free_new_clusters_locked(bs, new_offset, 1);
        return ret;
    }
    if (contents) {
        memcpy(t, contents, s->cluster_size);
    }
    /* The table and its refcount reach the disk before the L1 entry that
     * points at them: the cluster may be a freed one reused, and an L1
     * entry pointing at its old bytes after a power loss would map guest
     * data to whatever they say. */
    block_debug_event(bs->file, BLKDBG_L2_ALLOC_WRITE);
    ret = qcow2_write_meta_locked(bs, new_offset, s->cluster_size, t,
                                  QCOW2_META_L2);
    if (ret == 0 && !s->lazy_refcounts) {
        ret = qcow2_cache_flush_locked(bs, s->refblock_cache);
    }
    if (ret == 0) {
        ret = block_flush(bs->file);
    }
    if (ret < 0) {
        /* Nothing points at the new table yet (the L1 entry is not even
         * set in memory): give its cluster back, or every retry of a
         * write held on ENOSPC would leak one. */
        qcow2_cache_put(s->l2_cache, t);
        qcow2_cache_discard(s->l2_cache, new_offset);
        qcow2_meta_remove(s, new_offset, s->cluster_size);
        qcow2_free_new_clusters_locked(bs, new_offset, 1);
        return ret;
    }
    s->l1_table[l1_index] = new_offset | QCOW2_OFLAG_COPIED;
    ret = write_l1_entry_locked(bs, l1_index);
    if (ret < 0) {
        /* The table is referenced from the in-memory L1 table, which a
         * later L1 write puts on disk; it is not leaked. */
        qcow2_cache_put(s->l2_cache, t);
        return ret;
    }
    *table = t;
    return 0;
}

int qcow2_co_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                          uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->extended_l2) {
        return qcow2_sc_block_status(bs, offset, bytes, pnum, map, file);
    }
    if (atomic_load(&s->broken)) {
        return -EIO;
    }
    uint64_t in_cluster = offset & (s->cluster_size - 1);
    uint64_t want = DIV_ROUND_UP(in_cluster + bytes, s->cluster_size);
    uint64_t l2e, nb;
    int ret;
    {
        LOCK_GUARD(&s->lock);
        ret = qcow2_get_cluster_locked(bs, offset, want, &l2e, &nb);
    }
    if (ret < 0) {
        return ret;
    }
    *pnum = MIN(bytes, nb * s->cluster_size - in_cluster);
    int status = 0;
    switch (qcow2_cluster_type(s, l2e)) {
    case QCOW2_CLUSTER_UNALLOCATED:
        return 0;
    case QCOW2_CLUSTER_ZERO_PLAIN:
        return BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED;
    case QCOW2_CLUSTER_ZERO_ALLOC:
        status = BLOCK_STATUS_ZERO | BLOCK_STATUS_ALLOCATED |
                 BLOCK_STATUS_OFFSET_VALID;
        break;
    case QCOW2_CLUSTER_NORMAL:
        status = BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED |
                 BLOCK_STATUS_OFFSET_VALID;
        break;
    case QCOW2_CLUSTER_COMPRESSED:
        return BLOCK_STATUS_DATA | BLOCK_STATUS_ALLOCATED |
               BLOCK_STATUS_COMPRESSED;
    }
    if (map) {
        *map = (l2e & QCOW2_L2E_OFFSET_MASK) + in_cluster;
    }
    if (file) {
        *file = s->data_file;
    }
    return status;
}
