/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2 resize with preallocation=metadata: the clusters of the
 * new area get host clusters and L2 entries (without data written), as
 * QEMU's preallocate_co does, L2 table before its data clusters.  With
 * extended L2 entries the bitmaps are left alone: the subclusters stay
 * unallocated and read from below until written.
 */
#include <errno.h>
#include <stdlib.h>

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
