/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 images with extended L2 entries: mapping, reads and
 * block status by subcluster (docs/interop/qcow2.txt, "Extended L2
 * Entries").
 *
 * Each cluster is split into 32 subclusters, each of them unallocated
 * (read from the backing file), zero, or allocated in the cluster's
 * host cluster.  Images without extended L2 entries never come here:
 * their data path stays the one of qcow2-rw.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/drivers/qcow2/qcow2-io.h"
#include "block/drivers/qcow2/qcow2-subcluster.h"
#include "util/cleanup.h"

/* How many subclusters from sc on have the type of sc (which is *type),
 * up to the end of the cluster; -EINVAL for an invalid bitmap.  A
 * compressed cluster counts as 32 subclusters of its type. */
static int sc_range_type(const BDRVQcow2State *s, uint64_t l2e,
                         uint64_t bitmap, unsigned sc,
                         Qcow2SubclusterType *type)
{
    *type = qcow2_subcluster_type(s, l2e, bitmap, sc);
    uint32_t alloc = (uint32_t)bitmap;
    uint32_t zero = (uint32_t)(bitmap >> 32);
    uint32_t below = sc ? (uint32_t)(~0u >> (32 - sc)) : 0;
    uint32_t v;
    switch (*type) {
    case QCOW2_SC_INVALID:
        return -EINVAL;
    case QCOW2_SC_COMPRESSED:
        return (int)(QCOW2_EXTL2_SUBCLUSTERS - sc);
    case QCOW2_SC_NORMAL:
        v = alloc | below;
        break;
    case QCOW2_SC_ZERO_PLAIN:
    case QCOW2_SC_ZERO_ALLOC:
        v = zero | below;
        break;
    default:
        /* Runs until the next allocated or zero subcluster. */
        v = (alloc | zero) & ~below;
        return (v ? __builtin_ctz(v) : 32) - (int)sc;
    }
    return (~v ? __builtin_ctz(~v) : 32) - (int)sc;
}

static bool sc_has_host(Qcow2SubclusterType t)
{
    return t == QCOW2_SC_NORMAL || t == QCOW2_SC_ZERO_ALLOC ||
           t == QCOW2_SC_UNALLOCATED_ALLOC;
}

int qcow2_sc_lookup_locked(BlockNode *bs, uint64_t offset, uint64_t max_bytes,
                           Qcow2ScMapping *m)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t in_cluster = offset & (s->cluster_size - 1);
    uint64_t l1_index = offset >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (offset >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t avail = (s->l2_entries - l2_index) << s->cluster_bits;
    uint64_t needed = MIN(max_bytes + in_cluster, avail);
    unsigned sc = (unsigned)(in_cluster >> s->subcluster_bits);

    void *table;
    int ret = qcow2_get_l2_table_locked(bs, l1_index, &table);
    if (ret < 0) {
        return ret;
    }
    m->l2e = 0;
    m->bitmap = 0;
    if (!table) {
        m->type = QCOW2_SC_UNALLOCATED_PLAIN;
        m->bytes = needed - in_cluster;
        return 0;
    }
    uint64_t l2_offset = s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK;
    uint64_t first = qcow2_l2_get(s, table, l2_index);
    uint64_t first_bitmap = qcow2_l2_bitmap_get(table, l2_index);
    Qcow2SubclusterType type = qcow2_subcluster_type(s, first, first_bitmap, sc);
    if (sc_has_host(type) &&
        ((first & QCOW2_L2E_OFFSET_MASK) & (s->cluster_size - 1))) {
        qcow2_cache_put(s->l2_cache, table);
        return qcow2_signal_corruption_locked(
            bs, true, -1, -1,
            "Cluster allocation offset %#" PRIx64 " unaligned (L2 offset: %#"
            PRIx64 ", L2 index: %#" PRIx64 ")",
            (uint64_t)(first & QCOW2_L2E_OFFSET_MASK), l2_offset, l2_index);
    }
    ret = qcow2_check_data_file_entry_locked(bs, first, sc_has_host(type),
                                             offset, l2_offset, l2_index);
    if (ret < 0) {
        qcow2_cache_put(s->l2_cache, table);
        return ret;
    }

    /* Count the subclusters of the same type (contiguous on the host
     * where they have a host cluster), cluster by cluster. */
    uint64_t nb_clusters = DIV_ROUND_UP(needed, s->cluster_size);
    uint64_t count = 0;
    uint64_t expected = first & QCOW2_L2E_OFFSET_MASK;
    for (uint64_t i = 0; i < nb_clusters; i++) {
        unsigned from = i ? 0 : sc;
        uint64_t e = i ? qcow2_l2_get(s, table, l2_index + i) : first;
        uint64_t b = i ? qcow2_l2_bitmap_get(table, l2_index + i)
                       : first_bitmap;
        Qcow2SubclusterType t;
        int n = sc_range_type(s, e, b, from, &t);
        if (n < 0) {
            qcow2_cache_put(s->l2_cache, table);
            return qcow2_signal_corruption_locked(
                bs, true, -1, -1,
                "Invalid cluster entry found  (L2 offset: %#" PRIx64
                ", L2 index: %#" PRIx64 ")", l2_offset, l2_index + i);
        }
        if (i == 0 && t == QCOW2_SC_COMPRESSED) {
            count = (uint64_t)n;
            break;
        }
        if (i > 0) {
            if (t != type) {
                break;
            }
            if (sc_has_host(type)) {
                expected += s->cluster_size;
                if ((e & QCOW2_L2E_OFFSET_MASK) != expected) {
                    break;
                }
            }
        }
        count += (uint64_t)n;
        if (from + (unsigned)n < QCOW2_EXTL2_SUBCLUSTERS) {
            break;
        }
    }
    qcow2_cache_put(s->l2_cache, table);
    m->l2e = first;
    m->bitmap = first_bitmap;
    m->type = type;
    m->bytes = MIN((count + sc) << s->subcluster_bits, needed) - in_cluster;
    return 0;
}

int qcow2_sc_read_mapped(BlockNode *bs, const Qcow2ScMapping *m,
                         uint64_t offset, uint64_t len, uint8_t *buf)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t in_cluster = offset & (s->cluster_size - 1);
    switch (m->type) {
    case QCOW2_SC_UNALLOCATED_PLAIN:
    case QCOW2_SC_UNALLOCATED_ALLOC: {
        uint64_t size = block_node_size(bs);
        uint64_t in = offset < size ? MIN(len, size - offset) : 0;
        memset(buf + in, 0, len - in);
        return in ? block_read_backing(bs, offset, in, buf) : 0;
    }
    case QCOW2_SC_ZERO_PLAIN:
    case QCOW2_SC_ZERO_ALLOC:
        memset(buf, 0, len);
        return 0;
    case QCOW2_SC_NORMAL:
        return block_read(s->data_file,
                          (m->l2e & QCOW2_L2E_OFFSET_MASK) + in_cluster, len,
                          buf, 0);
    case QCOW2_SC_COMPRESSED:
        return qcow2_read_compressed_part(bs, m->l2e, in_cluster, len, buf);
    case QCOW2_SC_INVALID:
        break;
    }
    return -EIO;
}

static int lookup(BlockNode *bs, uint64_t offset, uint64_t bytes,
                  Qcow2ScMapping *m)
{
    BDRVQcow2State *s = bs->opaque;
    if (atomic_load(&s->broken)) {
        return -EIO;
    }
    LOCK_GUARD(&s->lock);
    return qcow2_sc_lookup_locked(bs, offset, bytes, m);
}

int qcow2_sc_pread(BlockNode *bs, uint64_t offset, uint64_t bytes,
                   uint8_t *buf)
{
    while (bytes > 0) {
        Qcow2ScMapping m;
        int ret = lookup(bs, offset, bytes, &m);
        if (ret < 0) {
            return ret;
        }
        ret = qcow2_sc_read_mapped(bs, &m, offset, m.bytes, buf);
        if (ret < 0) {
            return ret;
        }
        offset += m.bytes;
        bytes -= m.bytes;
        buf += m.bytes;
    }
    return 0;
}

int qcow2_sc_block_status(BlockNode *bs, uint64_t offset, uint64_t bytes,
                          uint64_t *pnum, uint64_t *map, BlockNode **file)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2ScMapping m;
    int ret = lookup(bs, offset, bytes, &m);
    if (ret < 0) {
        return ret;
    }
    *pnum = m.bytes;
    int status = 0;
    if (sc_has_host(m.type)) {
        if (map) {
            *map = (m.l2e & QCOW2_L2E_OFFSET_MASK) +
                   (offset & (s->cluster_size - 1));
        }
        if (file) {
            *file = s->data_file;
        }
        status |= BLOCK_STATUS_OFFSET_VALID;
    }
    switch (m.type) {
    case QCOW2_SC_ZERO_PLAIN:
    case QCOW2_SC_ZERO_ALLOC:
        status |= BLOCK_STATUS_ZERO;
        break;
    case QCOW2_SC_NORMAL:
        status |= BLOCK_STATUS_DATA;
        break;
    case QCOW2_SC_COMPRESSED:
        status |= BLOCK_STATUS_DATA | BLOCK_STATUS_COMPRESSED;
        break;
    default:
        break;
    }
    return status;
}

int qcow2_sc_status_above(BlockNode *bs, uint64_t offset, uint64_t bytes,
                          uint64_t *pnum)
{
    int ret = qcow2_sc_block_status(bs, offset, bytes, pnum, NULL, NULL);
    if (ret < 0 || (ret & (BLOCK_STATUS_DATA | BLOCK_STATUS_ZERO))) {
        return ret < 0 ? ret : ret | BLOCK_STATUS_ALLOCATED;
    }
    /* Unallocated here: what lies below (zeroes without a backing file
     * or past its end), gated on the backing node only. */
    if (!bs->backing || offset >= block_node_size(bs->backing)) {
        return ret | BLOCK_STATUS_ZERO;
    }
    uint64_t n = 0;
    int below = block_status_above(bs->backing, NULL, offset, *pnum, &n,
                                   NULL, NULL, NULL);
    if (below < 0) {
        return below;
    }
    *pnum = MIN(*pnum, n);
    return below;
}

bool qcow2_sc_reads_zero(BlockNode *bs, uint64_t offset, uint64_t bytes,
                         bool one_answer)
{
    uint64_t size = block_node_size(bs);
    if (one_answer && (offset > size || bytes > size - offset)) {
        return bytes == 0;
    }
    bytes = offset < size ? MIN(bytes, size - offset) : 0;
    while (bytes > 0) {
        uint64_t pnum = 0;
        int ret = qcow2_sc_status_above(bs, offset, bytes, &pnum);
        if (ret < 0 || !(ret & BLOCK_STATUS_ZERO) || pnum == 0 ||
            (one_answer && pnum < bytes)) {
            return false;
        }
        pnum = MIN(pnum, bytes);
        offset += pnum;
        bytes -= pnum;
    }
    return true;
}
