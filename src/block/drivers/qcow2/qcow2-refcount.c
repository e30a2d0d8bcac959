/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 refcounts: entry packing for every width (1..64 bits),
 * refcount block lookup and allocation, refcount table growth, and
 * cluster allocation at the end of the image.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "util/cleanup.h"
#include "util/log.h"

/* Entries narrower than a byte are packed from the least significant
 * bit of each byte (as QEMU does); wider ones are big-endian. */
uint64_t qcow2_refblock_get(const void *block, uint64_t index, unsigned order)
{
    const uint8_t *b = block;
    switch (order) {
    case 0:
        return (b[index / 8] >> (index % 8)) & 0x1;
    case 1:
        return (b[index / 4] >> (2 * (index % 4))) & 0x3;
    case 2:
        return (b[index / 2] >> (4 * (index % 2))) & 0xf;
    case 3:
        return b[index];
    case 4: {
        uint16_t v;
        memcpy(&v, b + index * 2, 2);
        return be16toh(v);
    }
    case 5: {
        uint32_t v;
        memcpy(&v, b + index * 4, 4);
        return be32toh(v);
    }
    default: {
        uint64_t v;
        memcpy(&v, b + index * 8, 8);
        return be64toh(v);
    }
    }
}

void qcow2_refblock_set(void *block, uint64_t index, unsigned order,
                        uint64_t value)
{
    uint8_t *b = block;
    switch (order) {
    case 0:
    case 1:
    case 2: {
        unsigned width = 1u << order;
        unsigned per_byte = 8 / width;
        unsigned shift = width * (index % per_byte);
        uint8_t mask = (uint8_t)(((1u << width) - 1) << shift);
        b[index / per_byte] = (uint8_t)((b[index / per_byte] & ~mask) |
                                        ((value << shift) & mask));
        break;
    }
    case 3:
        b[index] = (uint8_t)value;
        break;
    case 4: {
        uint16_t v = htobe16((uint16_t)value);
        memcpy(b + index * 2, &v, 2);
        break;
    }
    case 5: {
        uint32_t v = htobe32((uint32_t)value);
        memcpy(b + index * 4, &v, 4);
        break;
    }
    default: {
        uint64_t v = htobe64(value);
        memcpy(b + index * 8, &v, 8);
        break;
    }
    }
}

static int write_reftable_entry_locked(BlockNode *bs, uint64_t index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t be = htobe64(s->reftable[index]);
    return qcow2_write_meta_locked(bs, s->reftable_offset + index * 8, 8, &be,
                                   QCOW2_META_REFTABLE);
}

/* Points the header at a new refcount table (written and durable
 * already, with everything it lists) and makes it the one in use: table
 * (entries host-endian entries, a whole number of clusters at offset) is
 * taken over on success only.  *old_offset and *old_bytes say where the
 * previous table was, for the caller to free once the new table's own
 * refcounts are in place. */
int qcow2_switch_reftable_locked(BlockNode *bs, uint64_t *table,
                                 uint64_t entries, uint64_t offset,
                                 uint64_t *old_offset, uint64_t *old_bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t clusters = entries * 8 / s->cluster_size;
    struct {
        uint64_t offset;
        uint32_t clusters;
    } __attribute__((packed)) hdr = {
        htobe64(offset), htobe32((uint32_t)clusters)
    };
    block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE);
    int ret = qcow2_write_meta_locked(bs, 48, sizeof(hdr), &hdr,
                                      QCOW2_META_HEADER);
    if (ret < 0) {
        return ret;
    }
    *old_offset = s->reftable_offset;
    *old_bytes = ALIGN_UP(s->reftable_entries * 8, s->cluster_size);
    free(s->reftable);
    s->reftable = table;
    s->reftable_entries = entries;
    s->reftable_offset = offset;
    s->header.refcount_table_offset = offset;
    s->header.refcount_table_clusters = (uint32_t)clusters;
    qcow2_meta_remove(s, *old_offset, *old_bytes);
    return 0;
}

/* Replaces the refcount table by one at least min_entries long, placed
 * at the end of the image. */
static int grow_reftable_locked(BlockNode *bs, uint64_t min_entries)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t entries = MAX(s->reftable_entries * 2, min_entries + 1);
    uint64_t clusters = DIV_ROUND_UP(entries * 8, cs);
    if (clusters * cs > QCOW2_MAX_REFTABLE_BYTES) {
        clusters = QCOW2_MAX_REFTABLE_BYTES / cs;
        if (clusters * cs / 8 < min_entries + 1) {
            log_error("qcow2: %s: refcount table would exceed %u bytes",
                      bs->filename, QCOW2_MAX_REFTABLE_BYTES);
            return -EFBIG;
        }
    }
    entries = clusters * cs / 8;

    uint64_t *table = calloc(entries, sizeof(uint64_t));
    if (!table) {
        return -ENOMEM;
    }
    uint64_t *disk = calloc(entries, sizeof(uint64_t));
    if (!disk) {
        free(table);
        return -ENOMEM;
    }
    memcpy(table, s->reftable, s->reftable_entries * sizeof(uint64_t));
    for (uint64_t i = 0; i < entries; i++) {
        disk[i] = htobe64(table[i]);
    }
    uint64_t new_offset = s->next_alloc;
    s->next_alloc += clusters * cs;
    block_debug_event(bs->file, BLKDBG_REFTABLE_GROW);
    block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE);
    int ret = qcow2_write_meta_locked(bs, new_offset, clusters * cs, disk,
                                      QCOW2_META_NONE);
    free(disk);
    if (ret < 0) {
        free(table);
        return ret;
    }
    /* Everything the new table points at must be on disk first. */
    ret = qcow2_refcounts_durable_locked(bs);
    if (ret < 0) {
        free(table);
        return ret;
    }

    uint64_t old_offset, old_bytes;
    ret = qcow2_switch_reftable_locked(bs, table, entries, new_offset,
                                       &old_offset, &old_bytes);
    if (ret < 0) {
        free(table);
        return ret;
    }
    ret = qcow2_meta_add(s, new_offset, clusters * cs, QCOW2_META_REFTABLE);
    if (ret < 0) {
        return ret;
    }

    ret = qcow2_update_refcount_locked(bs, new_offset, clusters * cs, 1);
    if (ret < 0) {
        return ret;
    }
    return qcow2_free_clusters_locked(bs, old_offset, old_bytes);
}

/* Pins the refcount block covering cluster.  Without alloc, *block is
 * NULL when none exists. */
static int get_refblock_locked(BlockNode *bs, uint64_t cluster, bool alloc,
                               void **block)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t rt_index = cluster >> s->refblock_bits;
    int ret;

    *block = NULL;
    if (rt_index >= s->reftable_entries) {
        if (!alloc) {
            return 0;
        }
        ret = grow_reftable_locked(bs, rt_index);
        if (ret < 0) {
            return ret;
        }
    }
    uint64_t rb = s->reftable[rt_index] & QCOW2_REFT_OFFSET_MASK;
    if (rb) {
        block_debug_event(bs->file, BLKDBG_REFBLOCK_LOAD);
        if (rb & (s->cluster_size - 1)) {
            return qcow2_signal_corruption_locked(
                bs, true, -1, -1,
                "Refblock offset %#" PRIx64 " unaligned (reftable index: %#"
                PRIx64 ")", rb, rt_index);
        }
        if (rb >= block_node_size(bs->file)) {
            return qcow2_signal_corruption_locked(
                bs, true, -1, -1,
                "Refblock at %#" PRIx64 " is beyond the end of the image "
                "(reftable index: %#" PRIx64 ")", rb, rt_index);
        }
        return qcow2_cache_get_locked(bs, s->refblock_cache, rb, false, block);
    }
    if (!alloc) {
        return 0;
    }

    /* New refcount block at the end of the image.  If it covers itself,
     * its own refcount goes into it before it is written. */
    uint64_t new_rb = s->next_alloc;
    s->next_alloc += s->cluster_size;
    uint64_t new_cluster = new_rb >> s->cluster_bits;
    void *table;
    ret = qcow2_cache_get_locked(bs, s->refblock_cache, new_rb, true, &table);
    if (ret < 0) {
        return ret;
    }
    bool self = (new_cluster >> s->refblock_bits) == rt_index;
    if (self) {
        qcow2_refblock_set(table, new_cluster & (s->refblock_entries - 1),
                           s->refcount_order, 1);
    }
    ret = qcow2_meta_add(s, new_rb, s->cluster_size, QCOW2_META_REFBLOCK);
    if (ret == 0) {
        block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_WRITE);
        ret = qcow2_cache_write_table_locked(bs, s->refblock_cache, table);
    }
    if (ret < 0) {
        qcow2_cache_put(s->refblock_cache, table);
        return ret;
    }
    s->reftable[rt_index] = new_rb;
    block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_HOOKUP);
    ret = write_reftable_entry_locked(bs, rt_index);
    if (ret == 0 && !self) {
        ret = qcow2_update_refcount_locked(bs, new_rb, s->cluster_size, 1);
    }
    if (ret < 0) {
        qcow2_cache_put(s->refblock_cache, table);
        return ret;
    }
    *block = table;
    return 0;
}

int qcow2_get_refcount_locked(BlockNode *bs, uint64_t cluster,
                              uint64_t *refcount)
{
    BDRVQcow2State *s = bs->opaque;
    void *block;
    int ret = get_refblock_locked(bs, cluster, false, &block);
    *refcount = 0;
    if (ret < 0 || !block) {
        return ret;
    }
    *refcount = qcow2_refblock_get(block, cluster & (s->refblock_entries - 1),
                                   s->refcount_order);
    qcow2_cache_put(s->refblock_cache, block);
    return 0;
}

int qcow2_set_refcount_locked(BlockNode *bs, uint64_t cluster,
                              uint64_t refcount)
{
    BDRVQcow2State *s = bs->opaque;
    if (refcount > qcow2_refcount_max(s->refcount_order)) {
        return -ERANGE;
    }
    void *block;
    if (refcount != 0) {
        block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC);
    }
    int ret = get_refblock_locked(bs, cluster, refcount != 0, &block);
    if (ret < 0 || !block) {
        return ret;
    }
    qcow2_refblock_set(block, cluster & (s->refblock_entries - 1),
                       s->refcount_order, refcount);
    qcow2_cache_mark_dirty(s->refblock_cache, block);
    qcow2_cache_put(s->refblock_cache, block);
    return 0;
}

int qcow2_update_refcount_locked(BlockNode *bs, uint64_t offset,
                                 uint64_t length, int64_t delta)
{
    BDRVQcow2State *s = bs->opaque;
    if (length == 0 || delta == 0) {
        return 0;
    }
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + length - 1) >> s->cluster_bits;
    uint64_t max = qcow2_refcount_max(s->refcount_order);
    for (uint64_t c = first; c <= last; c++) {
        void *block;
        /* As QEMU, once for each refcount block the update looks up
         * (which allocates it when missing). */
        if (c == first || (c & (s->refblock_entries - 1)) == 0) {
            block_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC);
        }
        int ret = get_refblock_locked(bs, c, delta > 0, &block);
        if (ret < 0) {
            return ret;
        }
        if (!block) {
            log_error("qcow2: %s: freeing cluster %#" PRIx64
                      " that has no refcount block", bs->filename,
                      c << s->cluster_bits);
            return -EIO;
        }
        uint64_t idx = c & (s->refblock_entries - 1);
        uint64_t old = qcow2_refblock_get(block, idx, s->refcount_order);
        uint64_t new;
        if (delta < 0) {
            uint64_t d = (uint64_t)(-delta);
            if (old < d) {
                qcow2_cache_put(s->refblock_cache, block);
                log_error("qcow2: %s: refcount of cluster %#" PRIx64
                          " would drop below zero", bs->filename,
                          c << s->cluster_bits);
                return -EIO;
            }
            new = old - d;
        } else {
            if (max - old < (uint64_t)delta) {
                qcow2_cache_put(s->refblock_cache, block);
                return -ERANGE;
            }
            new = old + (uint64_t)delta;
        }
        qcow2_refblock_set(block, idx, s->refcount_order, new);
        qcow2_cache_mark_dirty(s->refblock_cache, block);
        qcow2_cache_put(s->refblock_cache, block);
        if (new == 0 && (s->pass_discard_request || s->punch_freed) &&
            bs->file->discard == BLOCK_DISCARD_UNMAP) {
            /* The discard completes before the cluster can be handed out
             * again (allocation runs under the same lock). */
            block_discard(bs->file, c << s->cluster_bits, s->cluster_size);
        }
    }
    return 0;
}

/* ---- reuse of freed clusters ---- */

void qcow2_reuse_clear(BDRVQcow2State *s)
{
    if (s->reuse) {
        memset(s->reuse, 0, DIV_ROUND_UP(s->reuse_bits, 64) * 8);
    }
    s->reuse_count = 0;
    s->reuse_low = 0;
    s->reuse_no_run = 0;
}

/* The bitmap never grows past this (2^27 clusters, 8 TiB of 64 KiB
 * clusters): a damaged image may claim an end far beyond its file, and
 * beyond the bound clusters are simply not reused. */
#define REUSE_MAX_BITS (1ULL << 27)

static void reuse_set_locked(BDRVQcow2State *s, uint64_t cluster)
{
    if (cluster >= (s->next_alloc >> s->cluster_bits) ||
        cluster >= REUSE_MAX_BITS) {
        return;
    }
    if (cluster >= s->reuse_bits) {
        uint64_t bits = MAX(cluster + 1, s->reuse_bits * 2);
        bits = MIN(ALIGN_UP(MAX(bits, 4096), 64), REUSE_MAX_BITS);
        uint64_t *p = realloc(s->reuse, bits / 8);
        if (!p) {
            return;           /* not reused: only space is lost */
        }
        memset(p + s->reuse_bits / 64, 0, (bits - s->reuse_bits) / 8);
        s->reuse = p;
        s->reuse_bits = bits;
    }
    uint64_t mask = 1ULL << (cluster & 63);
    if (!(s->reuse[cluster / 64] & mask)) {
        s->reuse[cluster / 64] |= mask;
        s->reuse_count++;
        s->reuse_no_run = 0;
        if (cluster < s->reuse_low || s->reuse_count == 1) {
            s->reuse_low = cluster;
        }
    }
}

/* Takes nb contiguous reusable clusters below the end of the image; the
 * first cluster's index, or UINT64_MAX when there is no such run. */
static uint64_t reuse_take_locked(BDRVQcow2State *s, uint64_t nb)
{
    if (s->reuse_count < nb || (s->reuse_no_run && nb >= s->reuse_no_run)) {
        return UINT64_MAX;
    }
    uint64_t end = MIN(s->reuse_bits, s->next_alloc >> s->cluster_bits);
    uint64_t run = 0;
    bool low_moved = false;
    for (uint64_t c = s->reuse_low; c < end; c++) {
        if (!(s->reuse[c / 64] & (1ULL << (c & 63)))) {
            if (c / 64 * 64 == c && !s->reuse[c / 64]) {
                c += 63;        /* a whole empty word */
            }
            run = 0;
            continue;
        }
        if (!low_moved) {
            s->reuse_low = c;   /* nothing free below the first set bit */
            low_moved = true;
        }
        if (++run == nb) {
            uint64_t first = c + 1 - nb;
            for (uint64_t i = first; i <= c; i++) {
                s->reuse[i / 64] &= ~(1ULL << (i & 63));
            }
            s->reuse_count -= nb;
            return first;
        }
    }
    /* Scanning again is pointless until something is freed. */
    s->reuse_no_run = nb;
    return UINT64_MAX;
}

void qcow2_reuse_freed_locked(BlockNode *bs, uint64_t l2e)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2ClusterType t = qcow2_cluster_type(s, l2e);
    if (t != QCOW2_CLUSTER_NORMAL && t != QCOW2_CLUSTER_ZERO_ALLOC) {
        return;    /* compressed clusters share host clusters: left out */
    }
    uint64_t off = l2e & QCOW2_L2E_OFFSET_MASK;
    uint64_t rc;
    if (off >= s->next_alloc ||
        qcow2_get_refcount_locked(bs, off >> s->cluster_bits, &rc) < 0 ||
        rc != 0 ||
        qcow2_meta_overlap(s, off, s->cluster_size, QCOW2_META_NONE) !=
            QCOW2_META_NONE) {
        return;
    }
    reuse_set_locked(s, off >> s->cluster_bits);
}

/* Undoes an allocation of reserved clusters at offset of which the
 * first counted had their refcount raised: drops those refcounts and,
 * if nothing was appended after the reservation, moves the allocation
 * cursor back so the space is used again (on a thin volume, the file
 * does not grow for a write that failed).  The cursor moves back only
 * when every refcount was dropped: a cluster still counted must never
 * be handed out again. */
static int give_back_locked(BlockNode *bs, uint64_t offset, uint64_t counted,
                            uint64_t reserved)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;
    for (uint64_t i = 0; i < counted; i++) {
        int r = qcow2_free_clusters_locked(bs, offset + i * s->cluster_size,
                                           s->cluster_size);
        if (r < 0 && ret == 0) {
            ret = r;
        }
    }
    if (ret < 0) {
        log_error("qcow2: %s: could not release clusters at %#" PRIx64
                  " after a failed write; they leak until `check -r leaks`",
                  bs->filename, offset);
        return ret;
    }
    if (s->next_alloc == offset + reserved * s->cluster_size) {
        s->next_alloc = offset;
    } else {
        /* Taken from the reusable ones, or something was appended after
         * them: unreferenced, they can be reused (within bounds). */
        for (uint64_t i = 0; i < reserved; i++) {
            reuse_set_locked(s, (offset >> s->cluster_bits) + i);
        }
    }
    return 0;
}

int qcow2_alloc_clusters_locked(BlockNode *bs, uint64_t nb, uint64_t *offset)
{
    BDRVQcow2State *s = bs->opaque;
    if (nb == 0) {
        return -EFBIG;
    }
    block_debug_event(bs->file, BLKDBG_CLUSTER_ALLOC);
    /* Freed clusters first, as QEMU: the image keeps its size while a
     * guest discards and rewrites.  (The write threshold keeps its
     * meaning: the end of the image, which reuse does not move.) */
    uint64_t first = reuse_take_locked(s, nb);
    if (first != UINT64_MAX) {
        uint64_t off = first << s->cluster_bits;
        for (uint64_t i = 0; i < nb; i++) {
            int ret = qcow2_update_refcount_locked(
                bs, off + i * s->cluster_size, s->cluster_size, 1);
            if (ret < 0) {
                give_back_locked(bs, off, i, nb);
                return ret;
            }
        }
        *offset = off;
        return 0;
    }
    uint64_t off = s->next_alloc;
    if (off + nb * s->cluster_size > QCOW2_MAX_HOST_OFFSET) {
        return -EFBIG;
    }
    s->next_alloc += nb * s->cluster_size;
    /* One cluster at a time so that a failure (a refcount block that
     * cannot be allocated) knows which refcounts it raised. */
    for (uint64_t i = 0; i < nb; i++) {
        int ret = qcow2_update_refcount_locked(bs, off + i * s->cluster_size,
                                               s->cluster_size, 1);
        if (ret < 0) {
            give_back_locked(bs, off, i, nb);
            return ret;
        }
    }
    *offset = off;
    return 0;
}

int qcow2_free_new_clusters_locked(BlockNode *bs, uint64_t offset,
                                   uint64_t nb)
{
    return give_back_locked(bs, offset, nb, nb);
}

int qcow2_alloc_bytes_locked(BlockNode *bs, uint64_t size, uint64_t *offset)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t cur = s->compressed_next;
    int ret;

    if (size == 0 || size > cs) {
        return -EINVAL;
    }
    block_debug_event(bs->file, BLKDBG_CLUSTER_ALLOC_BYTES);
    if (cur && (cur & (cs - 1))) {
        uint64_t cluster_end = ALIGN_UP(cur, cs);
        /* Pack after the previous compressed cluster if the data fits in
         * its host cluster, or runs on into clusters that can still be
         * appended contiguously. */
        bool fits = cur + size <= cluster_end || cluster_end == s->next_alloc;
        uint64_t rc = 0;
        if (fits) {
            ret = qcow2_get_refcount_locked(bs, cur >> s->cluster_bits, &rc);
            if (ret < 0) {
                return ret;
            }
        }
        if (fits && rc >= 1 && rc < qcow2_refcount_max(s->refcount_order)) {
            uint64_t end = ALIGN_UP(cur + size, cs);
            if (end > cluster_end) {
                s->next_alloc = end;
            }
            ret = qcow2_update_refcount_locked(bs, cur, size, 1);
            if (ret < 0) {
                return ret;
            }
            *offset = cur;
            s->compressed_next = (cur + size) & (cs - 1) ? cur + size : 0;
            return 0;
        }
    }
    uint64_t off = s->next_alloc;
    if (off + cs > QCOW2_MAX_HOST_OFFSET) {
        return -EFBIG;
    }
    s->next_alloc += cs;
    ret = qcow2_update_refcount_locked(bs, off, size, 1);
    if (ret < 0) {
        return ret;
    }
    *offset = off;
    s->compressed_next = size < cs ? off + size : 0;
    return 0;
}

int qcow2_free_clusters_locked(BlockNode *bs, uint64_t offset,
                               uint64_t length)
{
    block_debug_event(bs->file, BLKDBG_CLUSTER_FREE);
    int ret = qcow2_update_refcount_locked(bs, offset, length, -1);
    if (ret < 0) {
        /* qemu-img prints this line itself, and scripts (QEMU's tests)
         * read it. */
        fprintf(stderr, "qcow2_free_clusters failed: %s\n", strerror(-ret));
    }
    return ret;
}

int qcow2_free_l2e_locked(BlockNode *bs, uint64_t l2e)
{
    BDRVQcow2State *s = bs->opaque;
    if (qcow2_has_data_file(s)) {
        return qcow2_data_file_free_locked(bs, l2e);
    }
    switch (qcow2_cluster_type(s, l2e)) {
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        return qcow2_free_clusters_locked(bs, l2e & QCOW2_L2E_OFFSET_MASK,
                                          s->cluster_size);
    case QCOW2_CLUSTER_COMPRESSED: {
        Qcow2CompressedDesc d;
        qcow2_compressed_decode(l2e, s->cluster_bits, &d);
        return qcow2_free_clusters_locked(bs, d.host_offset & ~511ull,
                                          d.nb_sectors * 512);
    }
    default:
        return 0;
    }
}

int qcow2_get_refcount(BlockNode *bs, uint64_t cluster, uint64_t *refcount)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    return qcow2_get_refcount_locked(bs, cluster, refcount);
}

int qcow2_set_refcount(BlockNode *bs, uint64_t cluster, uint64_t refcount)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    return qcow2_set_refcount_locked(bs, cluster, refcount);
}

int qcow2_alloc_clusters(BlockNode *bs, uint64_t nb, uint64_t *offset)
{
    BDRVQcow2State *s = bs->opaque;
    LOCK_GUARD(&s->lock);
    return qcow2_alloc_clusters_locked(bs, nb, offset);
}

int qcow2_refcounts_durable_locked(BlockNode *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_cache_flush_locked(bs, s->refblock_cache);
    return ret < 0 ? ret : block_flush(bs->file);
}
